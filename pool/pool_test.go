package pool

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/healthcheck"
	"github.com/turnout/turnout/internal/httpsyntax"
	"github.com/turnout/turnout/upstream"
)

// tcpHealth checks a port of its own (checkPort) rather than the servers',
// so that the tests' servers see only the tests' requests.
func tcpHealth() config.Health {
	h := config.Default().Health
	h.Type = "tcp"
	h.Port = checkPort()
	h.Interval = config.Duration(time.Hour)
	h.Rise, h.Fall = 1, 1
	return h
}

// checkPort is a loopback port that accepts every health check.
var checkPort = sync.OnceValue(func() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
})

// newTestPool is newObservedPool for tests that do not watch servers come up.
func newTestPool(t *testing.T, specs ...config.Server) *Pool {
	t.Helper()
	p, _ := newObservedPool(t, specs...)
	return p
}

func spec(addr string, weight int) config.Server {
	return config.Server{Network: "tcp", Address: addr, Weight: weight}
}

func TestPickIsSmoothWeightedRoundRobin(t *testing.T) {
	p := newTestPool(t, spec("127.0.0.1:1", 5), spec("127.0.0.1:2", 1), spec("127.0.0.1:3", 1))
	var got []string
	for range 7 {
		s := p.Pick(nil)
		got = append(got, strings.TrimPrefix(s.Key(), "127.0.0.1:"))
		s.Release()
	}
	// nginx's smooth weighted round robin for weights 5,1,1.
	if want := "1 1 2 1 3 1 1"; strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}

func TestPickSkipsDownAndExcluded(t *testing.T) {
	p := newTestPool(t, spec("127.0.0.1:1", 1), spec("127.0.0.1:2", 1))
	servers := p.Servers()
	servers[0].Monitor().MarkDown(fmt.Errorf("test"))
	for range 4 {
		s := p.Pick(nil)
		if s != servers[1] {
			t.Fatalf("picked %s, want only the up server", s.Key())
		}
		s.Release()
	}
	if s := p.Pick(servers[1]); s != nil {
		t.Fatalf("picked %s although the only up server is excluded", s.Key())
	}
	if !p.Live() {
		t.Fatal("pool with one up server is not live")
	}
	servers[1].Monitor().MarkDown(fmt.Errorf("test"))
	if p.Live() || p.Pick(nil) != nil {
		t.Fatal("pool with no up server is live")
	}
}

func TestSetServersKeepsStateOfServersThatStay(t *testing.T) {
	p := newTestPool(t, spec("127.0.0.1:1", 1), spec("127.0.0.1:2", 1))
	kept := p.Servers()[0]
	health := tcpHealth()
	health.Rise = 2 // the new server's first check, which may run at once, cannot make it up
	removed := p.SetServers([]config.Server{spec("127.0.0.1:1", 3), spec("127.0.0.1:4", 1)}, health, healthcheck.Probation, time.Hour)
	if len(removed) != 1 || removed[0].Key() != "127.0.0.1:2" {
		t.Fatalf("removed %v, want 127.0.0.1:2", removed)
	}
	if removed[0].State() != healthcheck.Draining {
		t.Fatalf("removed server is %s, want draining", removed[0].State())
	}
	servers := p.Servers()
	if servers[0] != kept || kept.State() != healthcheck.Up || kept.Weight() != 3 {
		t.Fatalf("kept server: same=%v state=%s weight=%d; want same, up, 3", servers[0] == kept, kept.State(), kept.Weight())
	}
	if servers[1].State() != healthcheck.Probation {
		t.Fatalf("new server is %s, want probation", servers[1].State())
	}
}

func TestRoundTripDialErrorMarksDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := newTestPool(t, spec(addr, 1))
	s := p.Pick(nil)
	req, _ := http.NewRequest(http.MethodPost, "http://upstream/", strings.NewReader("body"))
	_, err = s.RoundTrip(req)
	if !upstream.IsDialError(err) {
		t.Fatalf("error %v, want a dial error", err)
	}
	if s.State() != healthcheck.Down || s.InFlight() != 0 {
		t.Fatalf("after a refused connection: state %s, in flight %d; want down, 0", s.State(), s.InFlight())
	}
}

func TestDrainWaitsForInFlightRequests(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	}))
	defer backend.Close()
	p := newTestPool(t, spec(backend.Listener.Addr().String(), 1))

	result := make(chan string, 1)
	go func() {
		s := p.Pick(nil)
		req, _ := http.NewRequest(http.MethodGet, "http://upstream/", nil)
		resp, err := s.RoundTrip(req)
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- string(b)
	}()
	<-started
	drained := make(chan int, 1)
	go func() { drained <- p.Drain(10 * time.Second) }()
	select {
	case <-drained:
		t.Fatal("drain returned while a request was in flight")
	case <-time.After(50 * time.Millisecond):
		// Not a synchronisation: a bounded look for a wrong early return.
	}
	close(release)
	if got := <-result; got != "done" {
		t.Fatalf("in-flight request got %q, want done", got)
	}
	select {
	case left := <-drained:
		if left != 0 {
			t.Fatalf("drain left %d requests", left)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not return after the request finished")
	}
}

func TestDrainTimeoutReportsRequestsLeft(t *testing.T) {
	p := newTestPool(t, spec("127.0.0.1:1", 1))
	s := p.Pick(nil) // counted in flight, never finished
	defer s.Release()
	if left := p.Drain(10 * time.Millisecond); left != 1 {
		t.Fatalf("drain left %d, want 1", left)
	}
}

// exchange is Server.Exchange with a Reply of its own.
func exchange(s *Server, req *http.Request, msg []byte) (*http.Response, httpsyntax.Fields, error) {
	reply := new(upstream.Reply)
	err := s.Exchange(req, msg, reply)
	return reply.Response, reply.Fields, err
}
