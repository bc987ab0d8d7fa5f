package front

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/turnout/turnout/internal/httpsyntax"
)

// frontWriter is the front's http.ResponseWriter: identity framing when the
// handler set Content-Length, chunked otherwise (close-delimited for
// HTTP/1.0), and none for HEAD, 204 and 304.
type frontWriter struct {
	header      http.Header
	c           net.Conn
	bw          *bufio.Writer // taken when the response begins, given back once sent
	req         *http.Request
	status      int
	wroteHeader bool
	chunked     bool
	noBody      bool
	close       bool  // close the connection after this response
	bytes       int64 // body bytes written, for metrics and the access log
	err         error
	scratch     [20]byte
}

func (w *frontWriter) reset(req *http.Request) {
	if len(w.header) > 0 {
		clear(w.header)
	}
	w.req, w.status, w.wroteHeader, w.chunked, w.noBody, w.err, w.bytes = req, 0, false, false, false, nil, 0
	w.close = req.Close
}

func (w *frontWriter) Header() http.Header { return w.header }

// flush sends what is buffered.
func (w *frontWriter) flush() error {
	if w.bw == nil {
		return nil
	}
	return w.bw.Flush()
}

// release gives the buffered writer back; what it held is dropped.
func (w *frontWriter) release() {
	if w.bw != nil {
		w.bw.Reset(nil)
		frontWriters.Put(w.bw)
		w.bw = nil
	}
}

func (w *frontWriter) WriteHeader(code int) {
	if w.wroteHeader || w.err != nil {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// An informational answer (103 Early Hints) goes out at once.
		w.takeBuffer()
		w.writeStatus(code)
		w.header.Write(w.bw)
		w.bw.WriteString("\r\n")
		w.err = w.bw.Flush()
		return
	}
	_, date := w.header["Date"]
	w.writeHead(code, &httpsyntax.Fields{Date: date, Length: len(w.header["Content-Length"]) > 0})
}

// RawHeaderWriter is a ResponseWriter that can send an upstream response's
// header fields as the upstream sent them (the front's own writer), instead
// of from its Header map. WriteRawHeader reports false when it cannot (an
// informational status); the caller then uses the Header map.
type RawHeaderWriter interface {
	WriteRawHeader(code int, fields httpsyntax.Fields) bool
}

// WriteRawHeader is WriteHeader for an upstream response whose fields come
// as sent, less the hop-by-hop ones: they are written as they are, then the
// header map's and the front's own.
func (w *frontWriter) WriteRawHeader(code int, h httpsyntax.Fields) bool {
	if code < 200 {
		return false
	}
	if !w.wroteHeader && w.err == nil {
		w.writeHead(code, &h)
	}
	return true
}

// takeBuffer takes a write buffer when the response begins.
func (w *frontWriter) takeBuffer() {
	if w.bw == nil {
		w.bw = frontWriters.Get().(*bufio.Writer)
		w.bw.Reset(w.c)
	}
}

// writeHead writes the status line, raw's fields, the header map's and the
// framing and Date fields the response needs.
func (w *frontWriter) writeHead(code int, raw *httpsyntax.Fields) {
	w.takeBuffer()
	w.wroteHeader, w.status = true, code
	h := w.header
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	switch {
	case raw.Length || w.noBody:
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		w.close = true
	}
	if w.close {
		h["Connection"] = []string{"close"}
	} else if !w.req.ProtoAtLeast(1, 1) {
		h["Connection"] = []string{"keep-alive"} // HTTP/1.0 closes otherwise
	}
	if !raw.Date {
		h["Date"] = httpDate()
	}
	w.writeStatus(code)
	w.bw.Write(raw.Raw)
	if len(h) == 0 {
		_, w.err = w.bw.WriteString("\r\n")
		return
	}
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		if k == "Trailer" && !w.chunked {
			continue
		}
		w.writeField(k, vv)
	}
	_, w.err = w.bw.WriteString("\r\n")
}

func (w *frontWriter) writeStatus(code int) {
	if code == http.StatusOK {
		w.bw.WriteString("HTTP/1.1 200 OK\r\n")
		return
	}
	w.bw.WriteString("HTTP/1.1 ")
	w.bw.Write(strconv.AppendInt(w.scratch[:0], int64(code), 10))
	w.bw.WriteByte(' ')
	w.bw.WriteString(http.StatusText(code))
	w.bw.WriteString("\r\n")
}

func (w *frontWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody || len(p) == 0 {
		return len(p), nil
	}
	if w.chunked {
		w.bw.Write(strconv.AppendInt(w.scratch[:0], int64(len(p)), 16))
		w.bw.WriteString("\r\n")
	}
	n, err := w.bw.Write(p)
	w.bytes += int64(n)
	if err == nil && w.chunked {
		_, err = w.bw.WriteString("\r\n")
	}
	w.err = err
	return n, err
}

// Written reports the final status sent (0 before one) and the body bytes
// (the handler's access log reads it instead of wrapping the writer).
func (w *frontWriter) Written() (int, int64) { return w.status, w.bytes }

// Flush sends what was written so far (server-sent events).
func (w *frontWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err == nil {
		w.err = w.bw.Flush()
	}
}

// finish ends the response: the last chunk and the trailers of a chunked one.
func (w *frontWriter) finish() error {
	if !w.wroteHeader {
		if len(w.header["Content-Length"]) == 0 {
			w.header["Content-Length"] = []string{"0"}
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil || !w.chunked {
		return w.err
	}
	w.bw.WriteString("0\r\n")
	for k, vv := range w.header {
		name, announced := strings.CutPrefix(k, http.TrailerPrefix)
		if !announced && !w.announced(k) {
			continue
		}
		w.writeField(name, vv)
	}
	_, w.err = w.bw.WriteString("\r\n")
	return w.err
}

// writeField writes a header or trailer field, once per value.
func (w *frontWriter) writeField(name string, values []string) {
	for _, v := range values {
		w.bw.WriteString(name)
		w.bw.WriteString(": ")
		w.bw.WriteString(v)
		w.bw.WriteString("\r\n")
	}
}

// announced reports whether k was declared in the Trailer header.
func (w *frontWriter) announced(k string) bool {
	for _, v := range w.header["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(name)) == k {
				return true
			}
		}
	}
	return false
}

// httpDate is the Date header's value, formatted once a second. The slice
// is shared by every response of that second: nobody writes to it.
func httpDate() []string {
	now := time.Now().Unix()
	if d := cachedDate.Load(); d != nil && d.at == now {
		return d.value
	}
	d := &dateText{at: now, value: []string{time.Unix(now, 0).UTC().Format(http.TimeFormat)}}
	cachedDate.Store(d)
	return d.value
}

type dateText struct {
	at    int64
	value []string
}

var cachedDate atomic.Pointer[dateText]
