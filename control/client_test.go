package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/internal/testsock"
)

// ctlClient is a Client of addr, closed at the end of the test.
func ctlClient(t *testing.T, addr, token string) *Client {
	t.Helper()
	c, err := NewClient(addr, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testCtx is a context that ends with the test, or after a minute.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestClientErrorAnswers(t *testing.T) {
	d := ctlStart(t, "")
	c := ctlClient(t, d.addrs.Control, "")
	ctx := testCtx(t)
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		code   string
		says   string
	}{
		{"unknown pool", func() error { _, err := c.Switch(ctx, api.SwitchBody{To: "C"}, nil); return err }, 404, api.CodeUnknownPool, "the pools are"},
		{"expect_active", func() error {
			_, err := c.Switch(ctx, api.SwitchBody{To: "B", ExpectActive: "B"}, nil)
			return err
		}, 409, api.CodeConflict, "A is active"},
		{"pause max", func() error { return c.Pause(ctx, time.Hour, "") }, 400, api.CodeBadRequest, `bad "max"`},
		// The test's config was never a file: reloading it fails.
		{"reload", func() error { _, err := c.Reload(ctx); return err }, 422, api.CodeInvalidConfig, "the running config stays"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T); want a *control.Error", err, err)
			}
			if ae.Status != tc.status || ae.Code != tc.code || !strings.Contains(ae.Message, tc.says) || err.Error() != ae.Message {
				t.Errorf("%+v; want %d, code %s, a message saying %q", ae, tc.status, tc.code, tc.says)
			}
		})
	}
	if d.sw.Active() != "A" || d.sw.Status().Paused != nil {
		t.Errorf("refused requests changed something: active %s, paused %+v", d.sw.Active(), d.sw.Status().Paused)
	}
}

func TestClientTCPSendsToken(t *testing.T) {
	addr := testsock.FreeAddr(t)
	ctlStart(t, addr)
	ctx := testCtx(t)
	_, err := ctlClient(t, "http://"+addr+"/", "wrong").Status(ctx)
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != api.CodeUnauthorized {
		t.Fatalf("wrong token: %v; want a 401 unauthorized *control.Error", err)
	}
	st, err := ctlClient(t, "http://"+addr+"/", ctlToken).Status(ctx)
	if err != nil || st.Active != "A" {
		t.Fatalf("right token: %+v, %v", st, err)
	}
}

func TestClientUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, err := ctlClient(t, sock, "").Status(testCtx(t))
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Addr != sock {
		t.Fatalf("no socket: %v (%T); want an *UnreachableError for %s", err, err, sock)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) || strings.Contains(err.Error(), "http://turnout") {
		t.Errorf("%q names net/http's URL, which the user never typed", err)
	}
	if _, err := NewClient("http://bad host", ""); err == nil || !strings.Contains(err.Error(), "not usable") {
		t.Errorf("NewClient of a URL with a space: %v; want not usable", err)
	}
}

func TestClientSwitchStreamsEventsThenResult(t *testing.T) {
	d := ctlStart(t, "")
	c := ctlClient(t, d.addrs.Control, "")
	ctx := testCtx(t)
	var events []api.Event
	res, err := c.Switch(ctx, api.SwitchBody{To: "b", Reason: "deploy 42"}, func(e api.Event) { events = append(events, e) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Type != "result" || res.Result != "switched" || res.Record == nil || res.Record.To != "B" || res.Record.Reason != "deploy 42" {
		t.Fatalf("result %+v; want switched to B", res)
	}
	var types []string
	for _, e := range events {
		types = append(types, e.Type)
		if e.ID != 0 && e.ID != res.Record.ID {
			t.Errorf("event %s carries id %d; the record is %d", e.Type, e.ID, res.Record.ID)
		}
	}
	if len(types) == 0 || types[0] != "accepted" || !events[0].Time.Equal(res.Record.RequestedAt) {
		t.Fatalf("events %v; want accepted first, at the record's requested_at", types)
	}
	for _, want := range []string{"progress", "ready", "switched", "drained"} {
		if !slices.Contains(types, want) {
			t.Errorf("events %v; no %s", types, want)
		}
	}

	recs, err := c.History(ctx, 0)
	if err != nil || len(recs) != 1 || recs[0].ID != res.Record.ID {
		t.Errorf("history %+v, %v; want the switch's record", recs, err)
	}

	// Already active, streamed and not.
	res, err = c.Switch(ctx, api.SwitchBody{To: "B"}, func(e api.Event) { t.Errorf("event %+v for the active pool", e) })
	if err != nil || res.Result != "already_active" || res.To != "B" {
		t.Errorf("switch to the active pool: %+v, %v", res, err)
	}
	res, err = c.Switch(ctx, api.SwitchBody{To: "B", NoWait: true}, nil)
	if err != nil || res.Result != "already_active" {
		t.Errorf("no_wait switch to the active pool: %+v, %v", res, err)
	}
}

func TestClientSwitchAbortedIsAResult(t *testing.T) {
	d := ctlStart(t, "")
	d.bDown.Store(true)
	c := ctlClient(t, d.addrs.Control, "")
	res, err := c.Switch(testCtx(t), api.SwitchBody{To: "B", Timeout: "300ms"}, nil)
	if err != nil || res.Result != "aborted" || res.Code != api.CodeAborted || res.Record == nil || !strings.Contains(res.Error, "not ready within") {
		t.Fatalf("%+v, %v; want an aborted result with its record", res, err)
	}
}

func TestClientLostStream(t *testing.T) {
	// A daemon stand-in that accepts the switch, then goes away mid-stream.
	sock := filepath.Join(testsock.ShortDir(t), "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", ndjson)
		fmt.Fprintf(w, `{"type":"accepted","from":"A","to":"B","time":"2025-01-02T03:04:05Z"}`+"\n")
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // drop the connection, as a killed daemon would
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	var events []api.Event
	_, err = ctlClient(t, sock, "").Switch(testCtx(t), api.SwitchBody{To: "B"}, func(e api.Event) { events = append(events, e) })
	var le *LostError
	if !errors.As(err, &le) || le.Addr != sock {
		t.Fatalf("%v (%T); want a *LostError", err, err)
	}
	if len(events) != 1 || events[0].Type != "accepted" || events[0].To != "B" {
		t.Errorf("events %+v; want the accepted event heard before the loss", events)
	}
}
