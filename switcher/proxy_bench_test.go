package switcher_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/state"
	"github.com/turnout/turnout/switcher"
)

// benchSwitcher starts a real Switcher whose pools A (active) and B have one
// real backend each answering "hello" to everything, health checks included.
func benchSwitcher(b *testing.B) *switcher.Switcher {
	b.Helper()
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })
	backA, backB := httptest.NewServer(hello), httptest.NewServer(hello)
	b.Cleanup(backA.Close)
	b.Cleanup(backB.Close)
	dir := b.TempDir()
	toml := fmt.Sprintf(`
listen  = ["127.0.0.1:0"]
control = %q
state   = %q
initial = "A"
[proxy]
drain_timeout = "100ms"
[pools.A]
servers = [%q]
[pools.B]
servers = [%q]
`, filepath.Join(dir, "control.sock"), filepath.Join(dir, "state.db"),
		strings.TrimPrefix(backA.URL, "http://"), strings.TrimPrefix(backB.URL, "http://"))
	cfg, err := config.Parse([]byte(toml), filepath.Join(dir, "turnout.toml"))
	if err != nil {
		b.Fatal(err)
	}
	store, err := state.Open(cfg.State, time.Second, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	s, err := switcher.New(switcher.Options{Config: cfg, Store: store})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

// discardWriter is the cheapest http.ResponseWriter: it keeps one header map
// and throws the body away, so that the benchmark counts the proxy's costs.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// BenchmarkProxyHandler is the request path from the front handler on:
// request ID, rewrite, pick, the upstream round trip over a kept-alive
// connection and copying the response, without the front listener.
func BenchmarkProxyHandler(b *testing.B) {
	h := benchSwitcher(b).Handler()
	req := httptest.NewRequest(http.MethodGet, "http://example.test/", nil)
	w := &discardWriter{header: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.header)
		req.Header.Del("X-Request-Id")
		h.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d, want 200", w.status)
		}
	}
}

// BenchmarkProxy is the whole request path as a client sees it: a real front
// listener and a keep-alive client, so it includes both HTTP/1.1 parsers.
// The client's own allocations are counted too.
func BenchmarkProxy(b *testing.B) {
	front := httptest.NewServer(benchSwitcher(b).Handler())
	b.Cleanup(front.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.Cleanup(client.CloseIdleConnections)
	get := func() error {
		resp, err := client.Get(front.URL + "/")
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d, want 200", resp.StatusCode)
		}
		return err
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := get(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := get(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkSwitch is one forced switch A→B and back B→A: two persisted
// history records (fsync each), the swaps and two drains of idle pools.
func BenchmarkSwitch(b *testing.B) {
	s := benchSwitcher(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		for _, to := range []string{"B", "A"} {
			if _, err := s.Switch(ctx, switcher.SwitchRequest{To: to, Force: true, Actor: "bench"}, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}
