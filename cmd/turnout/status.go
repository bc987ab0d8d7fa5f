package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/turnout/turnout/api"
)

// StatusCmd shows what the daemon is doing; --json prints GET /v1/status as
// docs/control-api.md describes it.
type StatusCmd struct {
	JSON bool `help:"Print the raw JSON of GET /v1/status."`
}

// Run prints the daemon's status.
func (c *StatusCmd) Run(cli *CLI) error {
	client, err := cli.client()
	if err != nil {
		return err
	}
	if c.JSON {
		data, err := client.StatusJSON(context.Background())
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(data)
		return err
	}
	st, err := client.Status(context.Background())
	if err != nil {
		return err
	}
	printStatus(os.Stdout, st)
	return nil
}

func printStatus(out io.Writer, st api.Status) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "active pool:\t%s\n", st.Active)
	maint := "off"
	if st.Maintenance {
		maint = "on"
		if st.Message != "" {
			maint += " (" + st.Message + ")"
		}
	}
	fmt.Fprintf(w, "maintenance:\t%s\n", maint)
	if sw := st.Switching; sw != nil {
		fmt.Fprintf(w, "switching:\t%s -> %s by %s, deadline in %s\n", sw.From, sw.To, orNone(sw.Actor), time.Until(sw.Deadline).Round(100*time.Millisecond))
	} else {
		fmt.Fprintf(w, "switching:\tno\n")
	}
	if st.Held > 0 {
		fmt.Fprintf(w, "held requests:\t%d\n", st.Held)
	}
	fmt.Fprintf(w, "config:\t%s (hash %s, loaded %s)\n", st.Config.Path, st.Config.Hash, st.Config.LoadedAt.Local().Format(time.DateTime))
	if st.Config.LastError != "" {
		fmt.Fprintf(w, "config error:\tthe last reload failed, the running config stays: %s\n", st.Config.LastError)
	}
	w.Flush()

	for _, p := range st.Pools {
		fmt.Fprintf(out, "\npool %s (%s)\n", p.Name, poolFlags(p))
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "  SERVER\tSTATE\tPASSES\tFAILS\tLATENCY\tIN-FLIGHT\tLAST ERROR")
		for _, s := range p.Servers {
			lat := "-"
			if !s.CheckedAt.IsZero() {
				lat = strconv.FormatFloat(s.LatencyMS, 'f', 1, 64) + "ms"
			}
			addr := s.Address
			if s.Weight != 1 {
				addr += " weight=" + strconv.Itoa(s.Weight)
			}
			fmt.Fprintf(w, "  %s\t%s\t%d\t%d\t%s\t%d\t%s\n", addr, s.State, s.Passes, s.Fails, lat, s.InFlight, s.LastError)
		}
		w.Flush()
	}
}

func poolFlags(p api.PoolStatus) string {
	role := "standby"
	if p.Active {
		role = "active"
	}
	live := "not live"
	if p.Live {
		live = "live"
	}
	ready := "not ready"
	if p.Ready {
		ready = "ready"
	}
	return role + ", " + live + ", " + ready
}
