package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/control"
	"github.com/turnout/turnout/state"
	"github.com/turnout/turnout/switcher"
)

// ServeCmd runs the daemon.
type ServeCmd struct{}

// stateLockTimeout is how long serve waits for another process's lock on the
// state file before it gives up.
const stateLockTimeout = 2 * time.Second

// Run serves until SIGTERM or SIGINT.
func (c *ServeCmd) Run(cli *CLI) error {
	cfg, err := loadConfig(cli.Config)
	if err != nil {
		return err
	}
	logger := cli.logger(cfg)
	if addr := os.Getenv("TURNOUT_PPROF"); addr != "" {
		servePprof(addr, logger)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serve(ctx, cfg, cli, logger, nil)
}

// servePprof serves net/http/pprof on addr (env TURNOUT_PPROF), for
// profiling under load; never on by default.
func servePprof(addr string, logger hclog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() {
		logger.Warn("pprof listening (TURNOUT_PPROF)", "addr", addr)
		if err := http.ListenAndServe(addr, mux); err != nil {
			logger.Error("pprof", "error", err)
		}
	}()
}

// serve runs a daemon for cfg until ctx ends; ready, when set, hears its
// addresses. The demo shares it.
func serve(ctx context.Context, cfg *config.Config, cli *CLI, logger hclog.Logger, ready func(switcher.Addrs)) error {
	store, err := state.Open(cfg.State, stateLockTimeout, logger.Named("state"))
	if err != nil {
		if errors.Is(err, state.ErrLocked) {
			return &exitError{code: exitUsage, err: err}
		}
		return &exitError{code: exitUsage, err: fmt.Errorf("open the state file: %w", err)}
	}
	defer store.Close()
	sw, err := switcher.New(switcher.Options{
		Config:  cfg,
		Store:   store,
		Logger:  logger,
		Version: version,
	})
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				sw.Reload("SIGHUP")
			}
		}
	}()
	if err := sw.Watch(ctx); err != nil {
		logger.Warn("config file not watched", "error", err)
	}
	admin := control.New(sw, control.Options{Logger: logger.Named("control")}).Listeners()
	return sw.Serve(ctx, admin, func(a switcher.Addrs) {
		notifySystemd("READY=1")
		if ready != nil {
			ready(a)
		}
	})
}

// notifySystemd tells systemd (Type=notify) about the daemon's state; it does
// nothing when not started by systemd.
func notifySystemd(state string) {
	socket := os.Getenv("NOTIFY_SOCKET")
	if socket == "" {
		return
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}
