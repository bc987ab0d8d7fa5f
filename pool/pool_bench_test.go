package pool

import (
	"testing"
	"time"

	"github.com/turnout/turnout/config"
	"github.com/turnout/turnout/healthcheck"
)

// benchPool returns a pool of four up servers with weights 5, 3, 1 and 1,
// checked once an hour so that no check runs during the benchmark. Nothing
// listens on the addresses: Pick never connects.
func benchPool(b *testing.B) *Pool {
	b.Helper()
	h := config.Default().Health
	h.Type = "tcp"
	h.Interval = config.Duration(time.Hour)
	p := New(Options{Name: "A"})
	p.SetServers([]config.Server{
		{Network: "tcp", Address: "127.0.0.1:1", Weight: 5},
		{Network: "tcp", Address: "127.0.0.1:2", Weight: 3},
		{Network: "tcp", Address: "127.0.0.1:3", Weight: 1},
		{Network: "tcp", Address: "127.0.0.1:4", Weight: 1},
	}, h, healthcheck.Up, time.Hour)
	b.Cleanup(p.Close)
	return p
}

// BenchmarkPick measures one pick and its release: the selection cost every
// proxied request pays.
func BenchmarkPick(b *testing.B) {
	p := benchPool(b)
	b.ReportAllocs()
	for b.Loop() {
		p.Pick(nil).Release()
	}
}

// BenchmarkPickParallel is BenchmarkPick from GOMAXPROCS goroutines at once:
// the shared round robin counter and in-flight counters are contended.
func BenchmarkPickParallel(b *testing.B) {
	p := benchPool(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Pick(nil).Release()
		}
	})
}
