package switcher

// The budgets of the lean request path, as tests that fail when a change
// breaks one (docs/ARCHITECTURE.md: invariants). They count bytes and
// allocations, never time, and skip under -race: scripts/test runs them
// once more without it.

import (
	"bytes"
	"net"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/turnout/turnout/internal/testsock"
)

// connStackBudget is the most goroutine stack a kept-alive client
// connection may hold, on average, once served. The request path, front to
// upstream read, fits the 4 KiB that a goroutine's stack has after its
// first growth (bench/README.md: memory); a path that outgrows it doubles
// the stack to 8 KiB for as long as the client stays connected, since
// stacks shrink only at a GC. Measured, a connection holds about 4,100 B
// (its 4 KiB stack and a share of the few other goroutines'); the budget
// sits halfway to 8 KiB, so it fails once about half the connections
// outgrow 4 KiB and never because of a stray goroutine or two.
const connStackBudget = 6000

// stackPerGoroutine returns the goroutine stack bytes that start(n) made
// appear, per goroutine, with the GC off: a GC would shrink stacks and
// hide a path that grows them.
func stackPerGoroutine(n int, start func(n int)) float64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start(n)
	runtime.ReadMemStats(&after)
	return float64(int64(after.StackInuse)-int64(before.StackInuse)) / float64(n)
}

func TestInvariantAServedConnectionHoldsAt4KiBOfStack(t *testing.T) {
	if raceEnabled {
		t.Skip("-race makes every frame larger; scripts/test runs this test without it")
	}
	a := newBackend(t, "A", nil)
	h := startSwitcher(t, "", []string{a.addr}, []string{a.addr})
	const conns = 500

	// A GC now sets the stack that new goroutines start with from the
	// ones alive (runtime: adaptive stack start), most of them shallow:
	// 2 KiB, or 4 KiB after a test that left deep goroutines behind. Then
	// no GC until the count is done.
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))

	// What a goroutine starts with, for the message, and to skip if it is
	// 8 KiB already: a served connection could not show the path then.
	// They stay parked until the end, or their freed stacks would serve
	// the connections and hide some of theirs.
	release := make(chan struct{})
	defer close(release)
	fresh := stackPerGoroutine(conns, func(n int) {
		parked := make(chan struct{}, n)
		for range n {
			go func() { parked <- struct{}{}; <-release }()
		}
		for range n {
			<-parked
		}
	})
	if fresh > connStackBudget {
		t.Skipf("goroutines start with %.0f B of stack in this process: a served connection's stack says nothing about the request path", fresh)
	}

	cs := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	served := stackPerGoroutine(conns, func(n int) {
		for range n {
			c, err := net.Dial("tcp", h.addrs.Proxy[0])
			must(t, err)
			cs = append(cs, c)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			exchangeRaw(t, c, []byte(benchReq), make([]byte, 1024), []byte("A GET"))
		}
	})
	t.Logf("%.0f B of stack per served connection (a fresh goroutine: %.0f B)", served, fresh)
	if served > connStackBudget {
		t.Fatalf("a served connection holds %.0f B of goroutine stack, over the budget of %d (a fresh goroutine: %.0f B): "+
			"something on the request path (front, handler, upstream exchange) made the stack outgrow 4 KiB; "+
			"find the deepest frame with go build -gcflags=all=-S, or move the deep call to a goroutine of its own as dialApart in upstream/h1.go does",
			served, connStackBudget, fresh)
	}
}

// leanRequestAllocs is the most a GET proxied on the lean path may
// allocate, the backend's and the client's allocations not counted: the
// request head as one string and the request ID (bench/README.md: CPU).
// The response, its body reader and the upstream request's buffer are
// reused; header values share a per-connection array.
const leanRequestAllocs = 2

func TestInvariantALeanGETAllocatesTwice(t *testing.T) {
	if raceEnabled {
		t.Skip("-race allocates on its own; scripts/test runs this test without it")
	}
	h := startSwitcher(t, "", []string{rawHelloBackend(t)}, []string{rawHelloBackend(t)})
	c, _ := testsock.Send(t, h.addrs.Proxy[0], "")
	req, buf, hello := []byte(benchReq), make([]byte, 1024), []byte("hello")
	exchangeRaw(t, c, req, buf, hello) // the upstream connection is dialled, the pools filled
	// AllocsPerRun counts the whole process's allocations and rounds down:
	// over a thousand requests, a health check or a timer in between adds
	// well under one.
	got := testing.AllocsPerRun(1000, func() { exchangeRaw(t, c, req, buf, hello) })
	if got > leanRequestAllocs {
		t.Fatalf("a GET on the lean path allocates %.0f times, over the budget of %d: "+
			"see what with go test -run X -bench Front -memprofile mem.out ./switcher; go tool pprof -sample_index=alloc_objects mem.out",
			got, leanRequestAllocs)
	}
}

// exchangeRaw writes req on c and reads into buf until an answer whose
// body ends with body came, allocating nothing itself.
func exchangeRaw(t testing.TB, c net.Conn, req, buf, body []byte) {
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	n := 0
	for n < 4 || !bytes.HasSuffix(buf[:n], body) || !bytes.Contains(buf[:n], headEnd) {
		if n == len(buf) {
			t.Fatalf("answer larger than %d bytes: %q", len(buf), buf)
		}
		m, err := c.Read(buf[n:])
		if err != nil {
			t.Fatalf("after %q: %v", buf[:n], err)
		}
		n += m
	}
}

var (
	headEnd     = []byte("\r\n\r\n")
	helloAnswer = []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello")
)

// rawHelloBackend is a loopback backend that answers every request head
// with the same fixed response, allocating nothing per request, so that
// counting the process's allocations counts turnout's. Its requests must
// have no body.
func rawHelloBackend(t testing.TB) string {
	addr, _ := testsock.Serve(t, func(_ int64, c net.Conn) {
		defer c.Close()
		buf := make([]byte, 8<<10)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			for {
				i := bytes.Index(buf[:n], headEnd)
				if i < 0 {
					break
				}
				if _, err := c.Write(helloAnswer); err != nil {
					return
				}
				n = copy(buf, buf[i+4:n])
			}
			if n == len(buf) {
				return
			}
		}
	})
	return addr
}
