package pool

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/turnout/turnout/internal/httpsyntax"
)

// readResponse reads the next response head on c. The common response —
// HTTP/1.1, final status, a body of declared length (or none) — is parsed
// in place: one string for the whole head and no textproto reader. Anything
// else (1xx, chunked or close-delimited bodies, HTTP/1.0, a head larger
// than the buffer, odd fields) is left in the buffer for http.ReadResponse,
// which parses it as it always does. A response parsed here has no Body:
// bodyLen bytes of it follow in c.br; -1 for one from http.ReadResponse.
func (c *h1Conn) readResponse(req *http.Request) (resp *http.Response, bodyLen int64, err error) {
	head, err := c.peekHead()
	if err != nil && err != errLongHead {
		if err == io.EOF && c.nread > 0 {
			err = io.ErrUnexpectedEOF // what http.ReadResponse says of a cut head
		}
		return nil, 0, err
	}
	if err == nil {
		if r, n := parseResponseHead(string(head), req); r != nil {
			c.br.Discard(len(head))
			return r, n, nil
		}
	}
	resp, err = http.ReadResponse(c.br, req)
	return resp, -1, err
}

// errLongHead sends a response head to http.ReadResponse: it is larger
// than the buffer, or its lines end in a bare LF.
var errLongHead = errors.New("response head not for the in-place parser")

// peekHead returns the response head, up to and including the blank line,
// without consuming it; errLongHead when it does not fit in the buffer.
func (c *h1Conn) peekHead() ([]byte, error) {
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		i := bytes.Index(buf, []byte("\r\n\r\n"))
		if j := bytes.Index(buf, []byte("\n\n")); j >= 0 && (i < 0 || j < i) {
			return nil, errLongHead // bare LF line ends: http.ReadResponse takes them
		}
		if i >= 0 {
			return buf[:i+4], nil
		}
		if len(buf) == c.br.Size() {
			return nil, errLongHead
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// parseResponseHead parses a response head to the *http.Response that
// http.ReadResponse would make of it, with Body nil; nil when the response
// is not one it takes (see readResponse). bodyLen is the length of the body
// that follows the head.
func parseResponseHead(text string, req *http.Request) (resp *http.Response, bodyLen int64) {
	line, rest, _ := strings.Cut(text, "\r\n")
	proto, status, ok := strings.Cut(line, " ")
	if !ok || proto != "HTTP/1.1" || len(status) < 3 || len(status) > 3 && status[3] != ' ' || !httpsyntax.FieldValue(status) {
		return nil, 0
	}
	code, err := strconv.Atoi(status[:3])
	if err != nil || code < 200 || code > 599 {
		return nil, 0
	}
	n := strings.Count(rest, "\r\n") - 1 // the fields; the last CRLF ends the head
	values := make([]string, 0, max(n, 0))
	h := make(http.Header, n)
	length := int64(-1)
	closing := false
	for rest != "" {
		var field string
		field, rest, _ = strings.Cut(rest, "\r\n")
		if field == "" {
			continue
		}
		name, value, ok := strings.Cut(field, ":")
		if !ok || !httpsyntax.Token(name) || !httpsyntax.FieldValue(value) {
			return nil, 0
		}
		value = strings.Trim(value, " \t")
		key := textproto.CanonicalMIMEHeaderKey(name)
		switch key {
		case "Transfer-Encoding", "Trailer":
			return nil, 0
		case "Content-Length":
			l, ok := httpsyntax.ContentLength(value)
			if !ok || length >= 0 {
				return nil, 0 // invalid or repeated: http.ReadResponse judges it
			}
			length = l
		case "Connection":
			closing = closing || httpsyntax.HasToken(value, "close")
		}
		if vv := h[key]; vv != nil {
			h[key] = append(vv, value)
			continue
		}
		values = append(values, value)
		h[key] = values[len(values)-1 : len(values) : len(values)]
	}
	if closing {
		delete(h, "Connection") // as http.ReadResponse does
	}
	bodyLen = length
	switch {
	case req.Method == http.MethodHead:
		bodyLen = 0 // the length, if any, is the one a GET would get
	case code == http.StatusNoContent || code == http.StatusNotModified:
		length, bodyLen = 0, 0
	case length < 0:
		return nil, 0 // delimited by the close: http.ReadResponse reads it
	}
	return &http.Response{
		Status:        status,
		StatusCode:    code,
		Proto:         proto,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: length,
		Close:         closing,
		Request:       req,
	}, bodyLen
}
