package front

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/internal/httpsyntax"
)

// The request rules (docs/request-rules.md): what turnout refuses of a
// client's request head beyond what net/http refuses, written once here.
// vetHead applies them to a raw head; the front's parser takes no head that
// vetHead refuses (it leaves such a head to net/http, on a vettedConn that
// refuses it); RefuseBadTarget applies those a parsed request still shows to
// the requests that net/http parsed on its own (TLS, HTTP/2).
//
// The framing rules close the request smuggling class: a head whose body
// length two parsers could read differently is never served, and its
// connection ends. RFC 9112 section 6.1 lets a server process a request
// with both Transfer-Encoding and Content-Length by Transfer-Encoding
// alone; turnout rejects it, as nginx does.

// vetTarget checks a request target: a path (origin-form), an absolute
// http or https URL without userinfo, or "*" for OPTIONS; no fragment, and
// only visible ASCII. It returns why it refuses target ("" when it does
// not), and the authority of an absolute URL.
func vetTarget(method, target string) (why, authority string, absolute bool) {
	for i := 0; i < len(target); i++ {
		switch c := target[i]; {
		case c <= ' ' || c >= 0x7f:
			return "a control character, space or non-ASCII byte in the request target", "", false
		case c == '#':
			return "a fragment (#) in the request target", "", false
		}
	}
	switch {
	case target == "":
		return "an empty request target", "", false
	case target == "*":
		if method != http.MethodOptions {
			return "the target * is for OPTIONS only", "", false
		}
		return "", "", false
	case target[0] == '/':
		return "", "", false
	}
	scheme, rest, _ := strings.Cut(target, "://")
	if !httpsyntax.EqualFold(scheme, "http") && !httpsyntax.EqualFold(scheme, "https") {
		return "the request target is neither a path, an absolute http(s) URL, nor * for OPTIONS", "", false
	}
	authority = rest
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority = rest[:i]
	}
	switch {
	case authority == "":
		return "an absolute request target without a host", "", false
	case strings.IndexByte(authority, '@') >= 0:
		return "userinfo (user@) in the request target", "", false
	}
	return "", authority, true
}

// headFacts is what vetHead learns of a head that it lets through: how the
// body that follows is framed.
type headFacts struct {
	chunked bool  // Transfer-Encoding: chunked
	length  int64 // Content-Length, 0 when none
	// tunnel: what follows is not a request head that net/http would
	// read after this one: an upgrade, CONNECT (answered 405 and closed),
	// HTTP/2, or a head net/http refuses itself, closing the connection.
	tunnel bool
}

// vetHead checks a whole request head (lines may end in a bare LF, as
// net/http accepts) against the request rules: why it refuses the head,
// "" when it does not.
func vetHead(head []byte) (why string, f headFacts) {
	line, rest := headLine(head)
	method, rest1, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest1, []byte(" "))
	if !ok1 || !ok2 || !httpsyntax.Token(method) || string(method) == http.MethodConnect {
		return "", headFacts{tunnel: true} // net/http refuses it, or it is CONNECT: 405
	}
	http10 := false
	switch {
	case string(proto) == "HTTP/1.0":
		http10 = true
	case bytes.HasPrefix(proto, []byte("HTTP/1.")):
	default:
		return "", headFacts{tunnel: true} // HTTP/2 prior knowledge; net/http refuses the rest
	}
	why, authority, absolute := vetTarget(string(method), string(target))
	if why != "" {
		return why, f
	}
	var (
		hosts, lengths, encodings int
		host, encoding            []byte
		upgrade                   bool
	)
	for len(rest) > 0 {
		line, rest = headLine(rest)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return "a header line folded onto the next (obs-fold)", f
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return "a header line without a colon", f
		}
		name, value := line[:colon], httpsyntax.TrimSpace(line[colon+1:])
		if n := len(name); n > 0 && (name[n-1] == ' ' || name[n-1] == '\t') {
			return "whitespace between a header name and its colon", f
		}
		if !httpsyntax.Token(name) {
			return "a header name that is not a token", f
		}
		if !httpsyntax.FieldValue(value) {
			return "a control character in a header value", f
		}
		switch {
		case httpsyntax.EqualFold(name, "host"):
			hosts++
			host = value
		case httpsyntax.EqualFold(name, "content-length"):
			lengths++
			n, ok := httpsyntax.ContentLength(value)
			if !ok {
				return "an invalid Content-Length", f
			}
			f.length = n
		case httpsyntax.EqualFold(name, "transfer-encoding"):
			encodings++
			encoding = value
		case httpsyntax.EqualFold(name, "upgrade"):
			upgrade = true
		}
	}
	switch {
	case lengths > 1:
		return "more than one Content-Length", f
	case encodings > 0 && lengths > 0:
		return "both Transfer-Encoding and Content-Length", f
	case encodings > 0 && http10:
		return "Transfer-Encoding in an HTTP/1.0 request", f
	case hosts > 1:
		return "more than one Host", f
	case hosts == 0 && !http10:
		return "no Host in an HTTP/1.1 request", f
	case absolute && hosts == 1 && !httpsyntax.SameName(host, authority):
		return "a Host that differs from the request target's host", f
	}
	f.chunked = encodings > 0
	// net/http answers any other coding 501 and closes; an upgrade's
	// connection is the app's once it switches.
	f.tunnel = upgrade || encodings > 1 || f.chunked && !httpsyntax.EqualFold(encoding, "chunked")
	return "", f
}

// headLine returns the first line of b without its line end (LF or CRLF),
// and the rest.
func headLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// RefuseBadTarget refuses, answering it, a request that net/http parsed and
// that breaks the rules its parsed form still shows (see vetHead for the
// others): 405 for CONNECT, 400 for a target the rules refuse. It reports
// whether it refused r.
func RefuseBadTarget(w http.ResponseWriter, r *http.Request) bool {
	status, why := 0, ""
	if r.Method == http.MethodConnect {
		status, why = http.StatusMethodNotAllowed, "CONNECT is not served: turnout is a reverse proxy, not a tunnel"
	} else if why, _, _ = vetTarget(r.Method, r.RequestURI); why != "" {
		status = http.StatusBadRequest
	} else if r.URL.User != nil {
		status, why = http.StatusBadRequest, "userinfo (user@) in the request target"
	}
	if status == 0 {
		return false
	}
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	http.Error(w, why, status)
	return true
}

// vettedConn is a connection that the front hands to net/http, or that a
// Vet listener accepts: it gives net/http the front's buffered bytes first
// (none from Vet), then the connection's, and vets each request head that
// goes through it (vetHead) before net/http reads it, following the
// framing of the bodies in between. A head it refuses is replaced by a
// line net/http answers 400 Bad Request, closing the connection; nothing
// after it reaches net/http. After a head whose connection leaves HTTP/1
// (an upgrade, HTTP/2), or that net/http refuses itself, the bytes go
// through unvetted.
type vettedConn struct {
	net.Conn
	logger hclog.Logger
	buf    []byte  // read and not yet given to net/http; buf[:ready] is vetted
	mem    *[]byte // what buf is a window on, once the connection was read; nil while buf is empty
	ready  int
	state  vetState
	left   int64 // bytes of the body or chunk still to go through
}

// Vet returns a listener whose connections hold every request head to the
// request rules, as the connections the front hands over do: for serving
// ln with net/http's server alone (the "stdlib" engine), from the first
// byte of each connection. HTTP/2 prior knowledge and upgrades go through
// unvetted after their first head, as on a hand-over; the rules the parsed
// request still shows are RefuseBadTarget's, in the handler. Closing the
// listener closes ln.
func Vet(ln net.Listener, logger hclog.Logger) net.Listener {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return vetListener{ln, logger}
}

type vetListener struct {
	net.Listener
	logger hclog.Logger
}

func (l vetListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &vettedConn{Conn: c, logger: l.logger}, nil
}

type vetState int

const (
	vetHeadState vetState = iota // a request head comes next
	vetBody                      // left bytes of a Content-Length body
	vetChunkSize                 // a chunk-size line
	vetChunkData                 // left bytes of a chunk's data
	vetChunkEnd                  // the CRLF after a chunk's data
	vetTrailer                   // the trailer fields after the last chunk
	vetOpen                      // no more vetting: bytes go through
	vetRefused                   // a head was refused: its stand-in, then the end
)

// maxVettedHead bounds a head that vetHead looks at: net/http refuses a
// larger one (431), so it goes through as it is.
const maxVettedHead = http.DefaultMaxHeaderBytes + 8<<10

// maxChunkLine bounds a chunk-size or trailer line, as net/http's.
const maxChunkLine = 4 << 10

// refusedHead stands in for a refused head: a request line without a
// method and version, which net/http answers 400 and closes on.
var refusedHead = []byte("refused\r\n\r\n")

func (c *vettedConn) Read(p []byte) (int, error) {
	for {
		if c.ready > 0 {
			n := copy(p, c.buf[:c.ready])
			c.consume(n)
			return n, nil
		}
		switch c.state {
		case vetOpen, vetRefused:
			if len(c.buf) > 0 {
				n := copy(p, c.buf)
				c.consume(n)
				return n, nil
			}
			if c.state == vetRefused {
				// Not the end: net/http would take it for a client that
				// left and cancel a request still in flight before the
				// refused one. What comes is dropped until net/http's
				// deadline ends the read, or the client the connection.
				for len(p) > 0 {
					if _, err := c.Conn.Read(p); err != nil {
						return 0, err
					}
				}
				return 0, nil
			}
			return c.Conn.Read(p)
		case vetBody, vetChunkData:
			if c.left == 0 {
				if c.state == vetChunkData {
					c.state = vetChunkEnd
				} else {
					c.state = vetHeadState
				}
				continue
			}
			if len(c.buf) > 0 {
				c.ready = int(min(c.left, int64(len(c.buf))))
				c.left -= int64(c.ready)
				continue
			}
			if int64(len(p)) > c.left {
				p = p[:c.left]
			}
			n, err := c.Conn.Read(p)
			c.left -= int64(n)
			return n, err
		}
		if c.vet() {
			continue
		}
		if err := c.fill(); err != nil {
			if len(c.buf) == 0 || deadline.IsTimeout(err) {
				return 0, err // a deadline of net/http's: the next read goes on
			}
			// The connection ends with part of a head or line: net/http
			// gets it, and fails on the end as it would have.
			c.state = vetOpen
		}
	}
}

// CloseWrite lets net/http end its side of the connection first after a
// refusal, so that the client reads the 400 before the close, as with the
// connections it accepts itself.
func (c *vettedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// consume drops n bytes given to net/http.
func (c *vettedConn) consume(n int) {
	c.buf = c.buf[n:]
	if c.ready >= n {
		c.ready -= n
	}
	if len(c.buf) == 0 {
		c.release()
	}
}

// release gives back the buffer, which holds nothing unvetted: a kept-alive
// connection that waits holds none.
func (c *vettedConn) release() {
	if c.mem != nil && len(*c.mem) == frontBufSize {
		frontBufs.Put(c.mem)
	}
	c.mem, c.buf = nil, nil
}

// fill reads more of the connection into buf.
func (c *vettedConn) fill() error {
	// buf is a window on mem (or, at first, the front's bytes): make room
	// after it, moving it to mem's start or into a larger buffer.
	if room := cap(c.buf) - len(c.buf); c.mem == nil || room < 1024 {
		if c.mem == nil || len(c.buf)+1024 > len(*c.mem) {
			var m *[]byte
			if len(c.buf)+1024 <= frontBufSize {
				m = frontBufs.Get().(*[]byte)
			} else {
				b := make([]byte, 2*len(c.buf)+1024)
				m = &b
			}
			c.buf = (*m)[:copy(*m, c.buf)]
			if c.mem != nil && len(*c.mem) == frontBufSize {
				frontBufs.Put(c.mem)
			}
			c.mem = m
		} else {
			c.buf = (*c.mem)[:copy(*c.mem, c.buf)]
		}
	}
	n, err := c.Conn.Read(c.buf[len(c.buf):cap(c.buf)])
	c.buf = c.buf[:len(c.buf)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// vet looks at the unvetted bytes at the start of buf in the current
// state; false when more are needed.
func (c *vettedConn) vet() bool {
	b := c.buf
	switch c.state {
	case vetHeadState:
		// net/http skips a few CR and LF before a head (the CRLF after a
		// body): they go through.
		if n := leadingBlank(b); n > 0 {
			c.ready = n
			return true
		}
		end, ok := headEndLF(b)
		if !ok {
			if len(b) > maxVettedHead {
				c.state = vetOpen // net/http answers 431
				return true
			}
			return false
		}
		why, f := vetHead(b[:end])
		if why != "" {
			c.logger.Debug("request refused", "reason", why, "remote", c.RemoteAddr())
			c.release()
			c.buf, c.ready, c.state = refusedHead, len(refusedHead), vetRefused
			return true
		}
		c.ready = end
		switch {
		case f.tunnel:
			c.state = vetOpen
		case f.chunked:
			c.state = vetChunkSize
		case f.length > 0:
			c.state, c.left = vetBody, f.length
		}
		return true
	case vetChunkSize, vetTrailer:
		i := bytes.IndexByte(b, '\n')
		switch {
		case i < 0 && len(b) > maxChunkLine:
			c.state = vetOpen // net/http refuses so long a line
			return true
		case i < 0:
			return false
		}
		c.ready = i + 1
		if c.state == vetTrailer {
			// Trailer lines are header lines: net/http takes a bare LF.
			if line, _ := headLine(b[:i+1]); len(line) == 0 {
				c.state = vetHeadState
			}
			return true
		}
		if i == 0 || b[i-1] != '\r' {
			c.state = vetOpen // net/http refuses a bare LF in a chunk-size line
			return true
		}
		size, ok := chunkSize(b[:i-1])
		switch {
		case !ok:
			c.state = vetOpen // net/http refuses the body, and closes
		case size == 0:
			c.state = vetTrailer
		default:
			c.state, c.left = vetChunkData, size
		}
		return true
	case vetChunkEnd:
		if len(b) < 2 {
			return false
		}
		if string(b[:2]) != "\r\n" {
			c.state = vetOpen // net/http refuses the body, and closes
			return true
		}
		c.ready, c.state = 2, vetChunkSize
		return true
	}
	return false
}

// leadingBlank counts the CR and LF bytes at the start of b.
func leadingBlank(b []byte) int {
	n := 0
	for n < len(b) && (b[n] == '\r' || b[n] == '\n') {
		n++
	}
	return n
}

// headEndLF returns the length of the head at the start of b, up to and
// including the empty line, lines ending in LF or CRLF.
func headEndLF(b []byte) (int, bool) {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0, false
		}
		line := b[i : i+j]
		i += j + 1
		if len(line) == 0 || string(line) == "\r" {
			return i, true
		}
	}
}

// chunkSize parses a chunk-size line (extensions and trailing whitespace
// allowed, as net/http's reader does).
func chunkSize(line []byte) (int64, bool) {
	line, _, _ = bytes.Cut(line, []byte(";"))
	line = httpsyntax.TrimSpace(line)
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	var n int64
	for _, c := range line {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | int64(c)
	}
	return n, n >= 0
}
