package switcher

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/turnout/turnout/front"
	"github.com/turnout/turnout/internal/httpsyntax"
	"github.com/turnout/turnout/pool"
	"github.com/turnout/turnout/upstream"
)

// The lean path serves the common request — no upgrade, a body of known
// length that fits in memory — without httputil.ReverseProxy: the upstream
// request is encoded once, straight from the client's request, and sent by
// pool.Server.Exchange over a kept-alive connection with no goroutines of
// its own. Everything else (websockets and other upgrades, streamed or large
// request bodies, Expect: 100-continue) takes ReverseProxy with net/http's
// transport. Both paths share deliver's hold and retry rules.

// leanRequest reports whether r can take the lean path.
func leanRequest(r *http.Request) bool {
	if r.ContentLength < 0 || r.ContentLength > front.BodyMax {
		return false
	}
	h := r.Header
	return len(h["Upgrade"]) == 0 && len(h["Expect"]) == 0 && len(h["Transfer-Encoding"]) == 0
}

// connectionListed returns the headers a Connection header names, which are
// hop-by-hop too; nil in the usual case of none.
func connectionListed(h http.Header) map[string]bool {
	var listed map[string]bool
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				if listed == nil {
					listed = make(map[string]bool)
				}
				listed[textproto.CanonicalMIMEHeaderKey(name)] = true
			}
		}
	}
	return listed
}

// smallBody is the largest body copied with a small buffer: most responses
// are small, and a thousand of them in flight should not hold 32 KiB each.
const smallBody = 4 << 10

var smallBuffers = sync.Pool{New: func() any { b := make([]byte, smallBody); return &b }}

// leanScratches recycle what one lean request holds while it waits for
// its answer: the buffer of the upstream request's head and body (1 KiB fits
// most heads, and one that grows is kept up to 8 KiB) and the response. One
// pool for both: each Get and Put costs about as much as a small
// allocation. The buffer that copies the body is taken only once the
// answer is there: a thousand requests waiting hold none.
var leanScratches = sync.Pool{New: func() any {
	s := &leanScratch{msg: make([]byte, 0, 1024)}
	s.got1xx = s.forward1xx
	return s
}}

type leanScratch struct {
	msg    []byte
	reply  upstream.Reply
	w      http.ResponseWriter          // the client's, while a request runs
	got1xx func(int, http.Header) error // forward1xx, made once
}

// forward1xx passes an informational response (103 Early Hints) on to the
// client, less its hop-by-hop fields, as httputil.ReverseProxy does.
func (s *leanScratch) forward1xx(code int, header http.Header) error {
	h := s.w.Header()
	listed := connectionListed(header)
	for k, vv := range header {
		if !httpsyntax.HopByHopName(k) && !listed[k] {
			h[k] = vv
		}
	}
	s.w.WriteHeader(code)
	clear(h) // the final response's fields are its own
	return nil
}

// encodeRequest appends r's upstream request head to b: the request line
// with the raw target as sent, Host as sent, the client's end-to-end
// headers, X-Forwarded-* (incoming ones kept only from trusted proxies) and
// the body's length.
func (s *Switcher) encodeRequest(b []byte, r *http.Request) []byte {
	trusted := s.fromTrustedProxy(r)
	underscores := s.settings.Load().cfg.Proxy.UnderscoresInHeaders
	listed := connectionListed(r.Header)
	uri := r.RequestURI
	if uri == "" || uri[0] != '/' && uri != "*" {
		uri = r.URL.RequestURI()
	}
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	for k, vv := range r.Header {
		if httpsyntax.HopByHopName(k) || listed[k] || !underscores && strings.IndexByte(k, '_') >= 0 {
			continue
		}
		switch k {
		case "Content-Length":
			continue // written below, once, from the body read
		case "X-Forwarded-For":
			continue // written below, with the client's address
		case "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded":
			if !trusted {
				continue // a client must not spoof where it comes from
			}
		}
		for _, v := range vv {
			b = appendHeader(b, k, v)
		}
	}
	for _, v := range r.Header["Te"] {
		if strings.Contains(strings.ToLower(v), "trailers") {
			b = appendHeader(b, "Te", "trailers")
			break
		}
	}
	b = append(b, "X-Forwarded-For: "...)
	if trusted {
		for _, v := range r.Header["X-Forwarded-For"] {
			b = append(b, v...)
			b = append(b, ", "...)
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		b = append(b, host...)
	} else {
		b = append(b, r.RemoteAddr...)
	}
	b = append(b, "\r\n"...)
	if !trusted || len(r.Header["X-Forwarded-Host"]) == 0 {
		b = appendHeader(b, "X-Forwarded-Host", r.Host)
	}
	if !trusted || len(r.Header["X-Forwarded-Proto"]) == 0 {
		proto := "http"
		if r.TLS != nil {
			proto = "https"
		}
		b = appendHeader(b, "X-Forwarded-Proto", proto)
	}
	if r.ContentLength > 0 || r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.ContentLength, 10)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

func appendHeader(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, v...)
	return append(b, "\r\n"...)
}

// serveLean proxies r on the lean path; errors get the same pages as the
// ReverseProxy path through onError. It returns what the access log should
// say of a request that failed, and a *cutError for a response cut short.
func (s *Switcher) serveLean(w http.ResponseWriter, r *http.Request, onError func(http.ResponseWriter, *http.Request, error)) error {
	scratch := leanScratches.Get().(*leanScratch)
	defer func() {
		// A buffer grown for a large body is left to the GC, so that the
		// pool keeps only small ones.
		if cap(scratch.msg) > 8<<10 {
			scratch.msg = make([]byte, 0, 1024)
		}
		scratch.reply, scratch.w = upstream.Reply{}, nil // let go of the request, the connection, the body, the client
		leanScratches.Put(scratch)
	}()
	scratch.w, scratch.reply.Got1xx = w, scratch.got1xx
	buf := s.encodeRequest(scratch.msg[:0], r)
	headLen := len(buf)
	if n := int(r.ContentLength); n > 0 {
		buf = slices.Grow(buf, n)[:headLen+n]
		if _, err := io.ReadFull(r.Body, buf[headLen:]); err != nil {
			front.AnswerBodyError(w, err)
			return err
		}
	}
	scratch.msg = buf

	err := s.deliver(r, func() bool { return false }, func(srv *pool.Server) error {
		return srv.Exchange(r, buf, &scratch.reply)
	})
	if err != nil {
		onError(w, r, err)
		return nil
	}
	resp, fields := scratch.reply.Response, scratch.reply.Fields
	defer resp.Body.Close() // before the scratch goes back: it holds the response
	if resp.StatusCode >= 500 && s.settings.Load().cfg.Proxy.InterceptErrors {
		onError(w, r, &interceptedError{status: resp.StatusCode})
		return nil
	}
	if fields.Raw != nil {
		// The request is sent: its buffer takes the fields that are kept.
		stream := s.writeRawHead(w, resp, fields, buf[:0])
		return s.copyBody(w, r, resp, stream)
	}
	return s.writeResponse(w, r, resp)
}

// writeRawHead writes the status and header fields of a response whose
// fields pool.Server.Exchange left as sent, leaving out the hop-by-hop ones
// (copied into scratch only when one must go); the body is copyBody's to
// write. fields must be written before the body is read: they are in the
// upstream connection's buffer. It reports whether the body is an event
// stream.
func (s *Switcher) writeRawHead(w http.ResponseWriter, resp *http.Response, fields httpsyntax.Fields, scratch []byte) (eventStream bool) {
	if fields.HopByHop {
		fields = endToEnd(fields.Raw, scratch)
	}
	if rw, ok := w.(front.RawHeaderWriter); ok && rw.WriteRawHeader(resp.StatusCode, fields) {
		return fields.EventStream
	}
	// Another writer (net/http's, for a connection the front handed over):
	// through the Header map.
	m := w.Header()
	for rest := fields.Raw; len(rest) > 0; {
		eol := bytes.IndexByte(rest, '\n') + 1
		name, value, _ := bytes.Cut(rest[:eol-2], []byte(":"))
		rest = rest[eol:]
		m.Add(string(name), string(httpsyntax.TrimSpace(value)))
	}
	w.WriteHeader(resp.StatusCode)
	return fields.EventStream
}

// endToEnd copies into scratch the field lines of raw that are not
// hop-by-hop (RFC 9110 section 7.6.1): neither one of the hop-by-hop
// fields nor one a Connection field names.
func endToEnd(raw, scratch []byte) httpsyntax.Fields {
	var connection [][]byte // the Connection fields' values
	kept := scratch[:0]
	for rest := raw; len(rest) > 0; {
		eol := bytes.IndexByte(rest, '\n') + 1 // upstream checked the fields: each line ends in CRLF, has a colon
		line := rest[:eol]
		rest = rest[eol:]
		colon := bytes.IndexByte(line, ':')
		switch kind := httpsyntax.FieldKind(line[:colon]); {
		case kind == httpsyntax.ConnectionField:
			connection = append(connection, line[colon+1:len(line)-2])
		case !httpsyntax.HopByHop(kind):
			kept = append(kept, line...)
		}
	}
	return httpsyntax.FieldsOf(dropListed(kept, connection))
}

// dropListed removes from fields, in place, those a Connection field names
// (RFC 9110 section 7.6.1): they are hop-by-hop too.
func dropListed(fields []byte, connection [][]byte) []byte {
	if len(connection) == 0 {
		return fields
	}
	kept := fields[:0]
	for rest := fields; len(rest) > 0; {
		eol := bytes.IndexByte(rest, '\n') + 1
		line := rest[:eol]
		rest = rest[eol:]
		if !listedIn(connection, line[:bytes.IndexByte(line, ':')]) {
			kept = append(kept, line...)
		}
	}
	return kept
}

// listedIn reports whether one of the Connection values names name.
func listedIn(connection [][]byte, name []byte) bool {
	for _, v := range connection {
		for len(v) > 0 {
			var token []byte
			token, v, _ = bytes.Cut(v, []byte(","))
			if httpsyntax.SameName(httpsyntax.TrimSpace(token), name) {
				return true
			}
		}
	}
	return false
}

// writeResponse copies an upstream response to the client: end-to-end
// headers, the body (flushed at once when it is a stream: server-sent
// events, or of unknown length), and trailers.
func (s *Switcher) writeResponse(w http.ResponseWriter, r *http.Request, resp *http.Response) error {
	h := w.Header()
	listed := connectionListed(resp.Header)
	for k, vv := range resp.Header {
		if !httpsyntax.HopByHopName(k) && !listed[k] {
			h[k] = vv
		}
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	return s.copyBody(w, r, resp, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"))
}

// copyBody copies the body and trailers of resp, whose head is written.
// What arrives goes out as it arrives: at once for a stream (an event
// stream, or of unknown length), and at the end of each burst otherwise (a
// read that took less than the buffer's room; a body that comes whole with
// its head goes out in one write with it). While the upstream is awaited
// after a burst, a front client is watched: one that goes away cuts the
// upstream read at once, and both connections close. A response cut short
// returns a *cutError.
func (s *Switcher) copyBody(w http.ResponseWriter, r *http.Request, resp *http.Response, eventStream bool) error {
	h := w.Header()
	flusher, _ := w.(http.Flusher)
	stream := flusher != nil && (resp.ContentLength < 0 || eventStream)
	if stream {
		flusher.Flush()
	}
	bufs := &buffers
	if resp.ContentLength >= 0 && resp.ContentLength <= smallBody {
		bufs = &smallBuffers
	}
	bufp := bufs.Get().(*[]byte)
	defer bufs.Put(bufp)
	buf := *bufp
	var (
		sent    int64
		watched bool
		gone    <-chan struct{}
		stop    = func() {}
	)
	defer func() { stop() }()
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return &cutError{why: "client went away", sent: sent, want: resp.ContentLength}
			}
			sent += int64(n)
			if flusher != nil && rerr == nil && (stream || n < len(buf)) {
				flusher.Flush()
				if !watched {
					watched = true
					gone, stop = watchFrontClient(r, resp.Body)
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			select {
			case <-gone:
				return &cutError{why: "client went away", sent: sent, want: resp.ContentLength}
			default:
				if r.Context().Err() != nil {
					// net/http's server ended the request: its client left.
					return &cutError{why: "client went away", sent: sent, want: resp.ContentLength}
				}
			}
			// The upstream failed mid-body: the client must see a broken
			// response, not a short one that looks whole.
			cut := &cutError{why: cutReason(rerr, s.settings.Load().cfg.Proxy.UpstreamReadTimeout.D()), sent: sent, want: resp.ContentLength}
			s.logger.Warn("response cut short", "error", cut, "path", r.URL.Path)
			return cut
		}
	}
	for k, vv := range resp.Trailer {
		if _, announced := h["Trailer"]; announced {
			h[k] = vv
		} else {
			h[http.TrailerPrefix+k] = vv
		}
	}
	return nil
}

// watchFrontClient watches the front client of r while its response body
// is awaited: one that goes away aborts the body's read. Nothing to do for
// a request net/http serves: its context ends when the client goes, and
// the upstream request with it.
func watchFrontClient(r *http.Request, body io.ReadCloser) (gone <-chan struct{}, stop func()) {
	ab, _ := body.(interface{ Abort() })
	if ab == nil {
		return nil, func() {}
	}
	gone, stop, ok := front.WatchClient(r.Context(), ab.Abort)
	if !ok {
		return nil, func() {}
	}
	return gone, stop
}
