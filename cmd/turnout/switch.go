package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/control"
	"github.com/turnout/turnout/state"
)

// SwitchCmd moves traffic to a pool with the switch protocol
// (docs/ARCHITECTURE.md: the switch protocol).
type SwitchCmd struct {
	Pool         string        `arg:"" help:"Pool to switch traffic to (case-insensitive)."`
	Timeout      time.Duration `help:"How long the pool may take to become ready (default: the config's switch.timeout, 60s)." placeholder:"60s"`
	Reason       string        `help:"Why, recorded in the history." placeholder:"TEXT"`
	ExpectActive string        `help:"Refuse (exit 4) unless this pool is active now." placeholder:"POOL"`
	Force        bool          `help:"Skip the warm-up: move traffic at once (emergencies only)."`
	NoWait       bool          `help:"Return once the daemon has accepted the switch."`
}

// Run asks the daemon to switch and reports progress and the verdict.
func (c *SwitchCmd) Run(cli *CLI) error {
	body := api.SwitchBody{To: c.Pool, Reason: c.Reason, ExpectActive: c.ExpectActive, Force: c.Force, NoWait: c.NoWait}
	if c.Timeout > 0 {
		body.Timeout = c.Timeout.String()
	}
	client, err := cli.client()
	if err != nil {
		return err
	}
	// Ctrl-C closes the connection, which aborts a switch still warming.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if c.NoWait {
		res, err := client.Switch(ctx, body, nil)
		if err != nil {
			return err
		}
		if res.Result == "already_active" {
			fmt.Printf("%s is already active\n", c.Pool)
		} else {
			fmt.Printf("accepted %s -> %s; the daemon runs the switch, follow it with `turnout status`\n", res.From, res.To)
		}
		return nil
	}

	var view progressView = &lineView{w: os.Stdout, seen: map[string]api.ServerProgress{}}
	if isTerminal(os.Stdout) {
		view = &liveView{w: os.Stdout}
	}
	var lost lostSwitch
	res, err := client.Switch(ctx, body, func(e api.Event) {
		switch {
		case e.Type == "accepted":
			lost.accepted = e
		case e.ID != 0:
			lost.id = e.ID
		}
		view.event(e)
	})
	var le *control.LostError
	switch {
	case err == nil:
		return verdict(os.Stdout, c.Pool, res)
	case !errors.As(err, &le):
		return err
	case ctx.Err() != nil:
		return exitWith(exitFailed, "interrupted: the daemon aborts the switch if it was still warming; check `turnout status`")
	case lost.accepted.Type == "":
		// Nothing is persisted before the accepted line is sent.
		return exitWith(exitFailed, "the daemon at %s ended the stream before it accepted the switch (%v): nothing was switched; check `turnout status`", le.Addr, le.Err)
	}
	reconnect := c.Timeout
	if reconnect <= 0 {
		reconnect = defaultReconnect
	}
	fmt.Fprintf(os.Stderr, "%v; reconnecting for up to %s to read the outcome from the history\n", le, reconnect)
	return lost.outcome(ctx, client, time.Now().Add(reconnect))
}

// defaultReconnect is how long `turnout switch` waits for a daemon it lost
// during a switch to come back, when --timeout is not given: the default
// switch.timeout.
const defaultReconnect = 60 * time.Second

// lostSwitch is what the CLI knows of a switch whose stream broke before
// the verdict (the daemon was killed, or the connection dropped): the
// accepted event (its time is the record's requested_at) and, once the
// daemon persisted the switch, the record's id.
type lostSwitch struct {
	accepted api.Event
	id       uint64
}

// outcome reconnects until deadline and reads the switch's outcome: its
// history record when there is one; none while the daemon no longer runs it
// means the daemon stopped before persisting, so the old pool kept traffic.
func (l lostSwitch) outcome(ctx context.Context, client *control.Client, deadline time.Time) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		known, err := l.lookup(ctx, client)
		if known {
			return err
		}
		last = err
		if time.Now().After(deadline) {
			// asExit(last) says what to do when the daemon is still unreachable.
			return exitWith(exitUnreachable, "the outcome of the switch to %s is unknown: the daemon at %s did not answer again in time (%v); "+
				"check `turnout status` and `turnout history` before you stop any pool", l.accepted.To, client.Addr(), asExit(last))
		}
		select {
		case <-ctx.Done():
			return exitWith(exitUnreachable, "interrupted while waiting for the daemon: the outcome of the switch to %s is unknown; check `turnout status` and `turnout history` before you stop any pool", l.accepted.To)
		case <-tick.C:
		}
	}
}

// errStillRunning: the daemon still runs the switch; ask again.
var errStillRunning = errors.New("the switch is still running")

// lookup asks the daemon once. Once the outcome is known it prints it and
// returns known with the verdict's error (nil: the new pool took traffic);
// otherwise err says why to try again.
func (l lostSwitch) lookup(ctx context.Context, client *control.Client) (known bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Status first: a switch no longer running has its record written.
	st, err := client.Status(ctx)
	if err != nil {
		return false, err
	}
	if sw := st.Switching; l.id == 0 && sw != nil && sw.RequestedAt.Equal(l.accepted.Time) {
		return false, errStillRunning
	}
	recs, err := client.History(ctx, 100)
	if err != nil {
		return false, err
	}
	for _, r := range recs {
		if r.To == l.accepted.To && r.RequestedAt.Equal(l.accepted.Time) && (l.id == 0 || r.ID == l.id) {
			return true, historyVerdict(os.Stdout, r)
		}
	}
	if l.id != 0 {
		// Persisted, yet gone from the history: the state file was found
		// damaged and replaced; the daemon started on the recorded pool.
		if st.Active == l.accepted.To {
			fmt.Printf("switched to %s, history id %d (no longer in the history; %s is active)\n", l.accepted.To, l.id, st.Active)
			return true, nil
		}
		return true, exitWith(exitFailed, "the switch to %s was persisted (history id %d) but %s is active now: check `turnout history`", l.accepted.To, l.id, st.Active)
	}
	return true, exitWith(exitFailed, "the switch to %s was never persisted (the daemon stopped before it was ready): the old pool keeps traffic, %s is active; switch again",
		l.accepted.To, st.Active)
}

// historyVerdict prints the outcome of a switch read back from the history
// and returns the error for the exit code.
func historyVerdict(w io.Writer, rec state.Record) error {
	switch rec.Result {
	case state.ResultSwitched, state.ResultForced:
		fmt.Fprintf(w, "switched to %s (%s), history id %d; the drain's end was not seen\n", rec.To, rec.Result, rec.ID)
		return nil
	}
	return exitWith(exitFailed, "switch to %s aborted, the old pool keeps traffic (history id %d): see `turnout history`", rec.To, rec.ID)
}

// verdict prints the final line and returns the error for the exit code.
func verdict(w io.Writer, pool string, l api.SwitchResult) error {
	rec := l.Record
	switch {
	case l.Result == "already_active":
		if l.To != "" {
			pool = l.To
		}
		fmt.Fprintf(w, "%s is already active\n", pool)
		return nil
	case rec != nil && (l.Result == state.ResultSwitched || l.Result == state.ResultForced):
		took := rec.SwitchedAt.Sub(rec.RequestedAt).Seconds()
		if l.Result == state.ResultForced {
			fmt.Fprintf(w, "forced switch to %s in %.1fs (no warm-up), history id %d\n", rec.To, took, rec.ID)
		} else {
			fmt.Fprintf(w, "switched to %s in %.1fs (warm-up %.1fs), history id %d\n", rec.To, took, float64(rec.WarmMS)/1000, rec.ID)
		}
		return nil
	case l.Result == state.ResultAborted:
		fmt.Fprintln(w, l.Error)
		if rec != nil {
			pool = rec.To
			for _, s := range rec.Servers {
				if s.State != "up" {
					fmt.Fprintf(w, "  %s  %s  %d passes  last error: %s\n", s.Address, s.State, s.Passes, orNone(s.LastError))
				}
			}
		}
		return exitWith(exitFailed, "switch to %s aborted, the old pool keeps traffic: fix the servers above (or pass a longer --timeout) and switch again", pool)
	}
	return exitWith(exitFailed, "switch to %s failed: %s", pool, l.Error)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// progressView shows the events of a switch as they arrive.
type progressView interface{ event(api.Event) }

// lineView prints one line per event, for logs and scripts.
type lineView struct {
	w    io.Writer
	seen map[string]api.ServerProgress
}

func (v *lineView) event(e api.Event) {
	switch e.Type {
	case "accepted":
		fmt.Fprintf(v.w, "accepted %s -> %s\n", e.From, e.To)
	case "progress":
		// Only servers whose count or state moved: a line per check would drown the log.
		for _, s := range e.Servers {
			s.Passes = min(s.Passes, s.Rise) // passes beyond rise change nothing
			if prev, ok := v.seen[s.Address]; ok && prev.Passes == s.Passes && prev.State == s.State && prev.LastError == s.LastError {
				continue
			}
			v.seen[s.Address] = s
			line := fmt.Sprintf("progress %s %d/%d %s", s.Address, s.Passes, s.Rise, s.State)
			if s.LastError != "" {
				line += "  last error: " + s.LastError
			}
			fmt.Fprintln(v.w, line)
		}
	case "drained":
		if e.Message != "" && e.Message != "drained" {
			fmt.Fprintf(v.w, "drained: %s\n", e.Message)
		} else {
			fmt.Fprintln(v.w, "drained")
		}
	case "aborted":
		// The verdict says why.
	default:
		fmt.Fprintln(v.w, e.Type)
	}
}

// liveView redraws one line per server of the target in place.
type liveView struct {
	w     io.Writer
	drawn int // lines drawn last time, to move back over
}

func (v *liveView) event(e api.Event) {
	switch e.Type {
	case "accepted":
		fmt.Fprintf(v.w, "switching %s -> %s\n", e.From, e.To)
	case "progress", "ready":
		v.redraw(e.Servers)
		if e.Type == "ready" {
			fmt.Fprintf(v.w, "%s is ready\n", e.To)
			v.drawn = 0
		}
	case "switched":
		fmt.Fprintf(v.w, "traffic goes to %s; draining %s…\n", e.To, e.From)
	case "aborted":
		v.redraw(e.Servers)
		v.drawn = 0
	}
}

func (v *liveView) redraw(servers []api.ServerProgress) {
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn) // cursor up to the first server line
	}
	for _, s := range servers {
		b.WriteString("\x1b[2K") // clear the old line
		passes := min(max(s.Passes, 0), s.Rise)
		fmt.Fprintf(&b, "%-22s  %-9s  %s %d/%d", s.Address, s.State, dots(passes, s.Rise), passes, s.Rise)
		if s.LastError != "" {
			fmt.Fprintf(&b, "  last error: %s", s.LastError)
		}
		b.WriteByte('\n')
	}
	v.drawn = len(servers)
	io.WriteString(v.w, b.String())
}

// dots draws passes (0 to rise) out of rise as ●●○.
func dots(passes, rise int) string {
	return strings.Repeat("●", passes) + strings.Repeat("○", rise-passes)
}
