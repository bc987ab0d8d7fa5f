package switcher

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/pool"
)

// Upgraded connections (websockets) live until one side closes them, so a
// drain cannot wait for them: at its deadline the pool closes what is
// left. Before that, each one is sent away at a random point of the drain
// window, so that their clients do not all reconnect at the same instant;
// a websocket gets a close frame (1001, going away) on both sides first,
// where its frames allow one (between two frames), as a server going away
// sends.

// upgradeSet is the switcher's upgraded client connections.
type upgradeSet struct {
	mu    sync.Mutex
	conns map[*upgradedClient]struct{}
}

// add wraps c, the client side of a connection that server upgraded, and
// tracks it until it is closed.
func (u *upgradeSet) add(c net.Conn, server *pool.Server, websocket bool) *upgradedClient {
	uc := &upgradedClient{Conn: c, set: u, server: server, websocket: websocket}
	u.mu.Lock()
	if u.conns == nil {
		u.conns = make(map[*upgradedClient]struct{})
	}
	u.conns[uc] = struct{}{}
	u.mu.Unlock()
	return uc
}

// goAwayOver sends away, each at a random point of the next window, the
// upgraded connections to p's servers. A margin at the end leaves the
// close frames time to go before the drain's deadline closes everything.
func (u *upgradeSet) goAwayOver(p *pool.Pool, window time.Duration) {
	servers := p.Servers()
	spread := window - min(window/10, time.Second)
	u.mu.Lock()
	defer u.mu.Unlock()
	for uc := range u.conns {
		if uc.timer == nil && slices.Contains(servers, uc.server) {
			uc.timer = time.AfterFunc(rand.N(spread+1), uc.goAway)
		}
	}
}

// upgradedClient is the client side of an upgraded connection, as
// httputil.ReverseProxy copies it: Write carries the server's bytes to the
// client, Read the client's to the server. For a websocket both follow
// the frames, so that a close frame can go between two.
type upgradedClient struct {
	net.Conn
	set       *upgradeSet
	server    *pool.Server
	websocket bool
	timer     *time.Timer // goAway's, once a drain set it; guarded by set.mu

	away atomic.Bool // goAway ran: Read ends the copy to the server

	wmu     sync.Mutex // serialises writes to the client
	out     frameTracker
	outDone atomic.Bool // a close frame went to the client: nothing more does

	in     frameTracker // only Read's goroutine uses it
	inDone bool         // Read handed the server its close frame
}

// goingAway is the close frame a server sends (RFC 6455 section 5.5.1):
// status 1001.
var goingAway = []byte{0x88, 0x02, 0x03, 0xe9}

func (c *upgradedClient) Write(p []byte) (int, error) {
	if !c.websocket {
		return c.Conn.Write(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.outDone.Load() {
		return len(p), nil // the connection is ending: what follows a close frame is dropped
	}
	n, err := c.Conn.Write(p)
	c.out.advance(p[:n])
	return n, err
}

func (c *upgradedClient) Read(p []byte) (int, error) {
	for {
		if c.away.Load() {
			if c.websocket && !c.inDone && c.in.between() && len(p) >= 8 {
				c.inDone = true
				return maskedGoingAway(p), nil
			}
			return 0, io.EOF // the copy to the server ends, and ReverseProxy closes both sides
		}
		n, err := c.Conn.Read(p)
		if c.websocket {
			c.in.advance(p[:n])
		}
		if n == 0 && err != nil && c.away.Load() {
			continue // woken by goAway
		}
		return n, err
	}
}

// maskedGoingAway writes into p the close frame a client sends (masked,
// RFC 6455 section 5.3), and returns its length.
func maskedGoingAway(p []byte) int {
	key := rand.Uint32()
	p[0], p[1] = 0x88, 0x82
	binary.BigEndian.PutUint32(p[2:6], key)
	p[6], p[7] = 0x03^p[2], 0xe9^p[3]
	return 8
}

// goAway ends the connection: a close frame to the client now, if no
// frame is on its way to it; then Read, woken, hands the server its own
// and ends the copy, and ReverseProxy closes both sides.
func (c *upgradedClient) goAway() {
	if c.away.Load() {
		return
	}
	if c.websocket && c.wmu.TryLock() {
		// TryLock: a write that waits on a client that reads nothing is in
		// the middle of a frame anyway.
		if !c.outDone.Load() && c.out.between() {
			c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			c.Conn.Write(goingAway)
		}
		c.outDone.Store(true)
		c.wmu.Unlock()
	}
	c.away.Store(true)
	c.Conn.SetReadDeadline(deadline.Past)
}

// Close closes the connection and forgets it.
func (c *upgradedClient) Close() error {
	c.set.mu.Lock()
	delete(c.set.conns, c)
	if c.timer != nil {
		c.timer.Stop()
	}
	c.set.mu.Unlock()
	return c.Conn.Close()
}

// frameTracker follows websocket frames (RFC 6455 section 5.2) through a
// byte stream, to tell when the stream is between two frames.
type frameTracker struct {
	head [14]byte
	have int    // bytes of the current frame's header seen
	left uint64 // bytes of its payload still to come
}

func (t *frameTracker) between() bool { return t.have == 0 && t.left == 0 }

func (t *frameTracker) advance(p []byte) {
	for len(p) > 0 {
		if t.left > 0 {
			k := min(uint64(len(p)), t.left)
			t.left -= k
			p = p[k:]
			continue
		}
		t.head[t.have] = p[0]
		t.have++
		p = p[1:]
		if t.have < 2 {
			continue
		}
		need, size := 2, uint64(t.head[1]&0x7f)
		switch size {
		case 126:
			need += 2
		case 127:
			need += 8
		}
		if t.head[1]&0x80 != 0 {
			need += 4 // the masking key
		}
		if t.have < need {
			continue
		}
		switch size {
		case 126:
			size = uint64(binary.BigEndian.Uint16(t.head[2:4]))
		case 127:
			size = binary.BigEndian.Uint64(t.head[2:10])
		}
		t.have, t.left = 0, size
	}
}
