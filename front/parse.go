package front

import (
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/turnout/turnout/internal/deadline"
	"github.com/turnout/turnout/internal/httpsyntax"
)

// readHead returns the request head, up to and including the blank line,
// without consuming it, reading more as needed. Blank lines before it are
// skipped (RFC 9112 section 2.2); errNoHead when that leaves nothing. Once
// part of a head is there, and before reading the rest, it calls more. An
// error when the head does not fit in the buffer (errHeadTooLarge) or the
// connection fails.
func readHead(cr *connReader, more func()) ([]byte, error) {
	for begun := false; ; {
		cr.skipBlankLines() // the LF of a CRLF may come in a read of its own
		buf := cr.buffered()
		if len(buf) == 0 {
			return nil, errNoHead
		}
		n, bareLF := httpsyntax.HeadEnd(buf)
		if bareLF {
			return nil, errBareLF
		}
		if n >= 0 {
			return buf[:n], nil
		}
		if !begun && string(buf) != "\r" { // a lone CR may be a blank line's
			begun = true
			more()
		}
		if err := cr.fill(); err != nil {
			return nil, err
		}
	}
}

var (
	// Heads that net/http reads instead of the front.
	errHeadTooLarge = errors.New("request head larger than the read buffer")
	errBareLF       = errors.New("request head with bare LF line ends")
	// errNoHead: only blank lines came, which the front skips.
	errNoHead = errors.New("no request head yet")
)

// parseRequest parses head, a whole request head as readHead returns it
// (every line ends in CRLF), into fc's request and returns it, or returns
// nil when the front does not serve it: the front serves HTTP/1.x with no
// upgrade, no Expect, no chunked body, a body of known length that the lean
// path takes, one valid Host, and well-formed fields. Anything else goes to
// net/http, which serves it or rejects it as it always does.
//
// The request is what http.ReadRequest makes of the same head, but for
// Pragma, which is passed on as sent.
func (fc *frontConn) parseRequest(head []byte) *http.Request {
	text := string(head)
	line, rest := cutLine(text)
	method, rest1, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest1, " ")
	if !ok1 || !ok2 || !httpsyntax.Token(method) || method == http.MethodConnect || target == "" {
		return nil
	}
	req := &fc.req
	*req = fc.base
	switch proto {
	case "HTTP/1.1":
		req.ProtoMinor = 1
	case "HTTP/1.0":
	default:
		return nil // HTTP/2 prior knowledge, HTTP/0.9, garbage
	}
	req.Proto, req.ProtoMajor = proto, 1
	req.Method, req.RequestURI = method, target
	if !fc.parseTarget(req, target) {
		return nil
	}
	clear(fc.header)
	h := fc.header
	values := fc.values[:0]
	hosts, length, seenLength := 0, int64(0), false
	var connection string
	for rest != "" {
		var field string
		field, rest = cutLine(rest)
		if field == "" {
			continue // the blank line that ends the head
		}
		name, value, ok := strings.Cut(field, ":")
		if !ok || !httpsyntax.Token(name) || !httpsyntax.FieldValue(value) {
			return nil
		}
		value = strings.Trim(value, " \t")
		key := textproto.CanonicalMIMEHeaderKey(name)
		switch key {
		case "Upgrade", "Expect", "Transfer-Encoding":
			return nil
		case "Host":
			hosts++
			if !hostBytes.All(value) {
				return nil
			}
			if req.Host == "" {
				req.Host = value
			} else if !httpsyntax.SameName(value, req.Host) {
				return nil // an absolute target's host differs: a vettedConn refuses it
			}
			continue // http.Request keeps it in Host, not in Header
		case "Content-Length":
			n, ok := httpsyntax.ContentLength(value)
			if !ok || n > BodyMax || seenLength {
				return nil // a repeated length is net/http's to judge
			}
			length, seenLength = n, true
		case "Connection":
			connection += "," + value
		}
		if vv := h[key]; vv != nil {
			h[key] = append(vv, value) // a repeated field: rare
			continue
		}
		values = append(values, value)
		h[key] = values[len(values)-1 : len(values) : len(values)]
	}
	fc.values = values
	if hosts > 1 || hosts == 0 && req.ProtoMinor == 1 {
		return nil
	}
	req.Header = h
	req.RemoteAddr = fc.remote
	req.Close = httpsyntax.HasToken(connection, "close") ||
		req.ProtoMinor == 0 && !httpsyntax.HasToken(connection, "keep-alive")
	req.ContentLength = length
	req.Body = http.NoBody
	fc.body = frontBody{fc: fc, n: length}
	if length > 0 {
		req.Body = &fc.body
	}
	return req
}

// cutLine returns the first line of s without its CRLF, and the rest. Every
// line of a head that readHead returns ends in CRLF.
func cutLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	return s[:i-1], s[i+1:]
}

// parseTarget sets req.URL (and req.Host for an absolute URL) from the
// request target; false if net/http should judge it. The usual target — a
// path and a query of plain characters — is split without url.Parse, to
// the same result.
func (fc *frontConn) parseTarget(req *http.Request, target string) bool {
	if target[0] == '/' && plainTarget(target) {
		path, query, hasQuery := strings.Cut(target, "?")
		fc.url = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
		req.URL = &fc.url
		return true
	}
	if why, _, _ := vetTarget(req.Method, target); why != "" {
		return false // a vettedConn refuses it
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return false
	}
	req.URL, req.Host = u, u.Host
	return true
}

// plainTarget reports whether target is a path that url.Parse keeps as it
// is — no escapes, nothing it would escape — and a query of visible
// characters.
func plainTarget(target string) bool {
	path, query, _ := strings.Cut(target, "?")
	return pathBytes.All(path) && queryBytes.All(query)
}

var (
	pathBytes  = httpsyntax.NewSet("-._~$&+,/:;=@")
	queryBytes = httpsyntax.NewSet("-._~!$&'()*+,;=:@/?%\"<>[]\\^`{|}") // no '#': a fragment is refused
	// hostBytes: what a host and port may hold; net/http judges the rest.
	hostBytes = httpsyntax.NewSet("-._~:[]!$&'()*+,;=%")
)

// frontBody is a plain request's body: the next n bytes of the connection.
// Each read that waits for the client may wait client_body_timeout; a
// failed read fails every later one.
type frontBody struct {
	fc  *frontConn
	n   int64
	err error
}

func (b *frontBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	fc := b.fc
	if len(fc.cr.buffered()) == 0 {
		fc.deadline.Within(fc.c, time.Now(), fc.f.bodyTimeout)
	}
	n, err := fc.cr.Read(p)
	b.n -= int64(n)
	switch {
	case err == io.EOF && b.n > 0:
		err = io.ErrUnexpectedEOF
	case deadline.IsTimeout(err):
		err = &BodyTimeoutError{fc.f.bodyTimeout}
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *frontBody) Close() error { return nil }
