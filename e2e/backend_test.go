package e2e

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The environment that turns the test binary into a backend process.
const (
	backendEnv        = "TURNOUT_E2E_BACKEND" // the backend's name
	backendNetworkEnv = "TURNOUT_E2E_NETWORK" // "tcp" or "unix"
	backendAddrEnv    = "TURNOUT_E2E_ADDR"    // host:port or socket path
)

// echo is the JSON body a backend answers on every path it does not
// otherwise handle: who answered and what arrived.
type echo struct {
	Backend string      `json:"backend"`
	Method  string      `json:"method"`
	Len     int64       `json:"len"`
	Host    string      `json:"host"`
	URI     string      `json:"uri"`
	Header  http.Header `json:"header"`
}

// backendServer is the app behind turnout in the tests.
type backendServer struct {
	name string
	// next lets a waiting /sse stream go on: /sse-next sends on it.
	next chan struct{}
	// stopping is closed at SIGTERM, so that /hang lets Shutdown finish.
	stopping chan struct{}
}

// backendMain runs a backend until SIGTERM (graceful) and returns its exit
// code. It prints "ready" once it listens.
func backendMain() int {
	name, network, addr := os.Getenv(backendEnv), os.Getenv(backendNetworkEnv), os.Getenv(backendAddrEnv)
	if network == "unix" {
		// A SIGKILLed predecessor leaves its socket file behind.
		os.Remove(addr)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "backend %s: listen on %s %s: %v\n", name, network, addr, err)
		return 1
	}
	b := &backendServer{name: name, next: make(chan struct{}, 1), stopping: make(chan struct{})}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	shutdown := make(chan error, 1)
	go func() {
		<-term
		close(b.stopping)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutdown <- srv.Shutdown(ctx)
	}()
	fmt.Println("ready")
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		fmt.Fprintf(os.Stderr, "backend %s: serve: %v\n", name, err)
		return 1
	}
	if err := <-shutdown; err != nil {
		fmt.Fprintf(os.Stderr, "backend %s: shutdown: %v\n", name, err)
		return 1
	}
	return 0
}

func (b *backendServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		io.WriteString(w, "ok")
	case "/status/500":
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "app error page")
	case "/slow":
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		b.echo(w, r)
	case "/hang":
		select {
		case <-r.Context().Done():
		case <-b.stopping:
		}
	case "/sse":
		b.sse(w, r)
	case "/sse-next":
		select {
		case b.next <- struct{}{}:
		default:
		}
		io.WriteString(w, "next")
	case "/ws":
		b.upgrade(w, r)
	default:
		b.echo(w, r)
	}
}

func (b *backendServer) echo(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(echo{Backend: b.name, Method: r.Method, Len: n, Host: r.Host, URI: r.RequestURI, Header: r.Header})
}

// sse sends three events 100 ms apart, each flushed; with ?wait=1 the
// second and third are only sent after a request to /sse-next.
func (b *backendServer) sse(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher := w.(http.Flusher)
	for i := 1; i <= 3; i++ {
		if i > 1 {
			var next <-chan time.Time
			var signal chan struct{}
			if r.URL.Query().Get("wait") != "" && i == 2 {
				signal = b.next
			} else {
				next = time.After(100 * time.Millisecond)
			}
			select {
			case <-next:
			case <-signal:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "data: event %d from %s\n\n", i, b.name)
		flusher.Flush()
	}
}

// wsGUID is the constant of RFC 6455 section 1.3.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B65"

func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// upgrade answers "Upgrade: websocket" with a real handshake and echoes text
// frames back unmasked, and "Upgrade: echo" by echoing raw bytes.
func (b *backendServer) upgrade(w http.ResponseWriter, r *http.Request) {
	proto := strings.ToLower(r.Header.Get("Upgrade"))
	if proto != "websocket" && proto != "echo" {
		http.Error(w, "want Upgrade: websocket or echo", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	if proto == "echo" {
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 4096)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				conn.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		wsAccept(r.Header.Get("Sec-WebSocket-Key")))
	brw.Flush()
	for {
		opcode, payload, err := readFrame(brw.Reader)
		if err != nil || opcode == 8 {
			return
		}
		if _, err := conn.Write(frame(opcode, payload, nil)); err != nil {
			return
		}
	}
}

// readFrame reads one websocket frame (final, payload under 64 KiB) and
// returns its opcode and unmasked payload.
func readFrame(r *bufio.Reader) (opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	} else if n == 127 {
		return 0, nil, fmt.Errorf("websocket frame too large for this test")
	}
	var mask [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return h[0] & 0x0f, payload, nil
}

// frame builds a final websocket frame; a client passes a mask, a server nil.
func frame(opcode byte, payload []byte, mask []byte) []byte {
	out := []byte{0x80 | opcode}
	n := len(payload)
	maskBit := byte(0)
	if mask != nil {
		maskBit = 0x80
	}
	if n < 126 {
		out = append(out, maskBit|byte(n))
	} else {
		out = append(out, maskBit|126, byte(n>>8), byte(n))
	}
	if mask == nil {
		return append(out, payload...)
	}
	out = append(out, mask...)
	for i, c := range payload {
		out = append(out, c^mask[i%4])
	}
	return out
}
