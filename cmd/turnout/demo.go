package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/switcher"
)

// DemoCmd runs two small demo pools and a turnout in one process on loopback.
type DemoCmd struct {
	Listen  string `help:"Proxy address (a free port is chosen when it is taken)." default:"127.0.0.1:8080"`
	Metrics string `help:"Status page and /metrics address (a free port is chosen when it is taken)." default:"127.0.0.1:9090"`
}

// Run starts the demo and stops it cleanly on Ctrl-C.
func (d *DemoCmd) Run(cli *CLI) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	dir, err := os.MkdirTemp("", "turnout-demo-")
	if err != nil {
		return fmt.Errorf("create the demo's temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	var servers strings.Builder
	for _, name := range []string{"A", "B"} {
		fmt.Fprintf(&servers, "\n[pools.%s]\nservers = [", name)
		for i := 1; i <= 2; i++ {
			addr, err := startDemoApp(ctx, name, i)
			if err != nil {
				return err
			}
			fmt.Fprintf(&servers, "%q, ", addr)
		}
		servers.WriteString("]\n")
	}
	text := fmt.Sprintf(`listen = [%q]
metrics_listen = %q
control = %q
state = %q
initial = "A"

[switch]
warm_interval = "200ms"

[health]
interval = "500ms"
standby_interval = "2s"
rise = 3
fall = 2
%s`, freeOr(d.Listen), freeOr(d.Metrics), filepath.Join(dir, "control.sock"), filepath.Join(dir, "state.db"), servers.String())
	cfg, err := config.Parse([]byte(text), filepath.Join(dir, "turnout.toml"))
	if err != nil {
		return fmt.Errorf("the demo's own config is not valid (a bug): %w", err)
	}
	cfg.Path = ""
	return serve(ctx, cfg, cli, cli.logger(cfg), func(a switcher.Addrs) {
		proxy := "http://" + a.Proxy[0] + "/"
		fmt.Printf(`
turnout demo is running: pools A and B, two servers each, A gets traffic.

  proxy        %s
  status page  http://%s/
  control      %s

Try, in another terminal:
  curl %s                                  # answered by pool A
  go run ./cmd/turnout switch B --control %s --reason "try it"
  curl %s                                  # now pool B
  go run ./cmd/turnout status --control %s
  go run ./cmd/turnout history --control %s

Ctrl-C stops the demo.
`, proxy, a.Metrics, a.Control, proxy, a.Control, proxy, a.Control, a.Control)
	})
}

// freeOr returns addr when it can be listened on, else the same host with a
// port chosen by the system, so that the demo starts on a busy machine.
func freeOr(addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return addr
	}
	host, _, _ := net.SplitHostPort(addr)
	return net.JoinHostPort(host, "0")
}

// startDemoApp serves a tiny app on a loopback port until ctx ends.
func startDemoApp(ctx context.Context, pool string, n int) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("start demo app %s%d: %w", pool, n, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hello from pool %s, server %d (%s). You asked for %s\n", pool, n, ln.Addr(), r.URL.RequestURI())
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	return ln.Addr().String(), nil
}
