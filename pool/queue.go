package pool

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Waiter is a request's place in line for a slot on a pool's servers. Its
// ticket orders it: the oldest request goes first, in whichever pool it
// waits (a switch moves the line to the new pool in the same order).
type Waiter struct {
	ticket uint64
	ready  chan struct{} // buffered 1: the waiter was taken out of the line to try
	queued *Pool         // the pool whose line holds it; guarded by that pool's queue.mu
}

// NewWaiter returns a waiter; a smaller ticket goes first.
func NewWaiter(ticket uint64) *Waiter {
	return &Waiter{ticket: ticket, ready: make(chan struct{}, 1)}
}

// Ready is signalled when the waiter is taken out of the line because a
// slot may be free: the holder tries PickQueued, and waits again if it got
// none.
func (w *Waiter) Ready() <-chan struct{} { return w.ready }

// queue is a pool's line of waiters, sorted by ticket.
type queue struct {
	mu   sync.Mutex
	line []*Waiter
	n    atomic.Int32 // len(line), read without the lock by Pick and wake
}

// Enqueue puts w in the pool's line at its ticket's place. It reports
// whether w is first in line: the caller should then try PickQueued once
// more, since a slot freed before it queued woke nobody.
func (p *Pool) Enqueue(w *Waiter) (first bool) {
	q := &p.queue
	q.mu.Lock()
	i, _ := slices.BinarySearchFunc(q.line, w, func(a, b *Waiter) int {
		switch {
		case a.ticket < b.ticket:
			return -1
		case a.ticket > b.ticket:
			return 1
		}
		return 0
	})
	q.line = slices.Insert(q.line, i, w)
	w.queued = p
	was := q.n.Add(1) - 1
	q.mu.Unlock()
	if was == 0 {
		p.hurryDown()
	}
	return i == 0
}

// Dequeue takes w out of the line, if it is still there. A wake that w
// received but will not use is passed on to the next waiter.
func (p *Pool) Dequeue(w *Waiter) {
	q := &p.queue
	q.mu.Lock()
	if w.queued == p {
		if i := slices.Index(q.line, w); i >= 0 {
			q.line = slices.Delete(q.line, i, i+1)
			q.n.Add(-1)
		}
		w.queued = nil
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	select {
	case <-w.ready:
		p.wake(1)
	default:
	}
}

// Waiting is the number of requests in the pool's line.
func (p *Pool) Waiting() int { return int(p.queue.n.Load()) }

// wake takes up to n waiters out of the line, oldest first, to try for a
// slot. It costs one atomic load when nobody waits.
func (p *Pool) wake(n int) {
	q := &p.queue
	if q.n.Load() == 0 {
		return
	}
	q.mu.Lock()
	n = min(n, len(q.line))
	for i, w := range q.line[:n] {
		w.queued = nil
		select {
		case w.ready <- struct{}{}:
		default:
		}
		q.line[i] = nil
	}
	q.line = q.line[n:] // O(n): the array's front is left to the next growth
	q.n.Add(int32(-n))
	q.mu.Unlock()
}

// WakeAll takes every waiter out of the line, to look again at where it
// should wait (the active pool changed, a pause ended).
func (p *Pool) WakeAll() { p.wake(int(p.queue.n.Load())) }
