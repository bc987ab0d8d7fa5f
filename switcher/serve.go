package switcher

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/front"
)

// Addrs are the addresses the daemon listens on, known once it is ready
// (ports chosen by the system included).
type Addrs struct {
	Proxy   []string
	TLS     []string
	Control string
	Metrics string
}

// Serve opens every proxy listener of the config and the admin listeners,
// calls ready with their addresses,
// and serves until ctx is cancelled. It then stops accepting, lets requests in
// flight finish for up to drain_timeout, closes upgraded connections and stops
// the health checks. An address that cannot be listened on is an error before
// anything is served.
func (s *Switcher) Serve(ctx context.Context, admin []Listener, ready func(Addrs)) error {
	cfg := s.Config()
	var (
		addrs   Addrs
		servers []*http.Server
		lns     []net.Listener
	)
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	listen := func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		lns = append(lns, ln)
		return ln, nil
	}
	errorLog := log.New(httpErrorLog{s.logger.Named("http")}, "", 0)
	handler := s.Handler()
	proxyServer := func() *http.Server {
		return &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: cfg.Proxy.ClientHeaderTimeout.D(),
			IdleTimeout:       cfg.Proxy.ClientIdleTimeout.D(),
			ErrorLog:          errorLog,
		}
	}

	// served is one listener and how to serve it.
	type served struct {
		serve func() error
		addr  net.Addr
	}
	var (
		todo   []served
		fronts []*front.Server
		// proxies are the proxy listeners' servers that net/http runs
		// alone: TLS, and every listen address with the stdlib engine.
		proxies []*http.Server
	)
	for _, addr := range cfg.Listen {
		ln, err := listen("tcp", addr)
		if err != nil {
			return err
		}
		std := proxyServer()
		if cfg.H2C {
			var p http.Protocols
			p.SetHTTP1(true)
			p.SetUnencryptedHTTP2(true)
			std.Protocols = &p
		}
		addrs.Proxy = append(addrs.Proxy, ln.Addr().String())
		if cfg.Proxy.Engine == config.EngineStdlib {
			// net/http serves every request, each head held to the
			// request rules from the connection's first byte.
			proxies = append(proxies, std)
			vln := front.Vet(ln, s.logger.Named("front"))
			todo = append(todo, served{func() error { return std.Serve(vln) }, ln.Addr()})
			continue
		}
		// Plain HTTP/1.1 is served by the lean front; everything else on
		// this listener (h2c, upgrades…) by net/http behind it.
		fr := front.New(front.Options{
			Logger: s.logger.Named("front"), Handler: handler, Std: std,
			HeaderTimeout: cfg.Proxy.ClientHeaderTimeout.D(), IdleTimeout: cfg.Proxy.ClientIdleTimeout.D(), BodyTimeout: cfg.Proxy.ClientBodyTimeout.D(),
		})
		fronts = append(fronts, fr)
		todo = append(todo, served{func() error { return fr.Serve(ln) }, ln.Addr()})
	}
	if len(cfg.TLSListen) > 0 {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			closeAll()
			return fmt.Errorf("load tls_cert %s and tls_key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		for _, addr := range cfg.TLSListen {
			ln, err := listen("tcp", addr)
			if err != nil {
				return err
			}
			srv := proxyServer()
			proxies = append(proxies, srv)
			srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
			addrs.TLS = append(addrs.TLS, ln.Addr().String())
			tln := tls.NewListener(ln, srv.TLSConfig)
			todo = append(todo, served{func() error { return srv.Serve(tln) }, ln.Addr()})
		}
	}
	for _, ext := range admin {
		ln, err := ext.Listen()
		if err != nil {
			closeAll()
			return err
		}
		lns = append(lns, ln)
		if ext.Addr != nil {
			ext.Addr(&addrs, ln.Addr().String())
		}
		srv := &http.Server{
			Handler:           ext.Handler,
			ReadHeaderTimeout: ext.HeaderTimeout,
			IdleTimeout:       ext.IdleTimeout,
			ErrorLog:          errorLog,
		}
		servers = append(servers, srv)
		todo = append(todo, served{func() error { return srv.Serve(ln) }, ln.Addr()})
	}

	errc := make(chan error, len(todo))
	var wg sync.WaitGroup
	for _, t := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := t.serve(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("serve %s: %w", t.addr, err)
			}
		}()
	}
	s.logger.Info("listening", "engine", cfg.Proxy.Engine, "proxy", addrs.Proxy, "tls", addrs.TLS, "control", addrs.Control, "metrics", addrs.Metrics)
	if ready != nil {
		ready(addrs)
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.logger.Info("shutting down", "drain_timeout", s.Config().Proxy.DrainTimeout.D())
	drain := s.Config().Proxy.DrainTimeout.D()
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	closeAll() // the fronts stop accepting; the http.Servers close theirs too
	var swg, aborting sync.WaitGroup
	// Requests still with the upstream at the deadline are cut once their
	// clients are gone, so that they close rather than get a 504.
	aborted := make(chan struct{})
	aborting.Add(len(fronts) + len(proxies))
	go func() { aborting.Wait(); close(aborted) }()
	for _, fr := range fronts {
		swg.Add(1)
		go func() {
			defer swg.Done()
			fr.Shutdown(sctx, aborting.Done)
		}()
	}
	// shutdown ends srv's connections gracefully until the drain's time is
	// up, then at once; then done.
	shutdown := func(srv *http.Server, done func()) {
		swg.Add(1)
		go func() {
			defer swg.Done()
			if srv.Shutdown(sctx) != nil {
				srv.Close()
			}
			done()
		}()
	}
	for _, srv := range proxies {
		shutdown(srv, aborting.Done)
	}
	for _, srv := range servers {
		shutdown(srv, func() {})
	}
	for _, p := range s.pools {
		swg.Add(1)
		s.upgraded.goAwayOver(p, drain)
		go func() {
			defer swg.Done()
			if p.Drain(drain) > 0 {
				<-aborted
				s.cutInFlight(p)
			}
		}()
	}
	swg.Wait()
	wg.Wait()
	s.Close()
	return err
}

// Listener is a listener the daemon serves beside the proxy's (the control
// API, metrics and the status page, which package control builds): opened
// with the proxy's listeners, served by net/http with its timeouts, and
// shut down with them.
type Listener struct {
	Listen  func() (net.Listener, error)
	Addr    func(a *Addrs, addr string) // notes the address once listening; may be nil
	Handler http.Handler
	// HeaderTimeout bounds a request head; IdleTimeout, the wait for the
	// next request on a kept-alive connection.
	HeaderTimeout, IdleTimeout time.Duration
}
