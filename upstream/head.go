package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/turnout/turnout/internal/httpsyntax"
)

// ReadResponse reads the next response head from br into reply.Response
// and reply.Fields; req is the request it answers. The common response —
// HTTP/1.1, final status, a body of declared length (or none) — is parsed
// in place, into reply's own http.Response: its header fields stay as
// sent, in Fields, which is valid until the body is first read; its Header
// and Body are nil, and bodyLen bytes of body follow in br. Anything else
// (1xx, chunked or close-delimited bodies, HTTP/1.0, a head larger than
// br's buffer, odd fields) is left for http.ReadResponse, which parses it
// as it always does, Body included; Fields.Raw is then nil and bodyLen -1.
//
// br's reader bounds the head: Client's stops at MaxResponseHead. An end
// of br before the head begins is io.EOF, within it io.ErrUnexpectedEOF.
// The Client reads every response head with it, and the health checks
// theirs.
func ReadResponse(br *bufio.Reader, req *http.Request, reply *Reply) (bodyLen int64, err error) {
	reply.Response, reply.Fields = nil, httpsyntax.Fields{}
	head, err := peekHead(br)
	if err != nil && err != errLongHead {
		if err == io.EOF && br.Buffered() > 0 {
			err = io.ErrUnexpectedEOF // what http.ReadResponse says of a cut head
		}
		return 0, err
	}
	if err == nil {
		if n, ok := parseResponseHead(head, req, &reply.body.resp, &reply.Fields); ok {
			br.Discard(len(head)) // the bytes stay in the buffer until the next read
			reply.Response = &reply.body.resp
			return n, nil
		}
	}
	reply.Response, err = http.ReadResponse(br, req)
	if err == nil && !httpsyntax.TokenNames(reply.Response.Header) {
		reply.Response = nil
		return -1, ErrBadFieldName
	}
	if err == nil && head != nil && framedTwice(head) {
		// http.ReadResponse reads the body as Transfer-Encoding says and
		// forgets the Content-Length; the server may have meant the
		// other, so nothing more is read from this connection (RFC 9112
		// section 6.3).
		reply.Response.Close = true
	}
	return -1, err
}

// framedTwice reports whether head has both a Transfer-Encoding and a
// Content-Length field.
func framedTwice(head []byte) bool {
	var encoding, length bool
	for rest := head; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		if colon := bytes.IndexByte(line, ':'); colon > 0 {
			switch httpsyntax.FieldKind(line[:colon]) {
			case httpsyntax.TransferEncodingField:
				encoding = true
			case httpsyntax.LengthField:
				length = true
			}
		}
	}
	return encoding && length
}

// ErrBadFieldName is a response with a header field name that is not a
// token, whitespace before its colon above all (RFC 9112 section 5.1):
// the response is refused (502) rather than passed on.
var ErrBadFieldName = errors.New("upstream response with whitespace or another invalid byte in a header field name")

// errLongHead sends a response head to http.ReadResponse: it is larger
// than the buffer, or its lines end in a bare LF.
var errLongHead = errors.New("response head not for the in-place parser")

// peekHead returns the response head, up to and including the blank line,
// without consuming it; errLongHead when it does not fit in br's buffer.
func peekHead(br *bufio.Reader) ([]byte, error) {
	for {
		buf, _ := br.Peek(br.Buffered())
		n, bareLF := httpsyntax.HeadEnd(buf)
		if bareLF {
			return nil, errLongHead // bare LF line ends: http.ReadResponse takes them
		}
		if n >= 0 {
			return buf[:n], nil
		}
		if len(buf) == br.Size() {
			return nil, errLongHead
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// parseResponseHead parses a response head into resp: what
// http.ReadResponse would make of it, but with Header and Body nil, the
// header fields being left as sent, in *into. It reports false, leaving
// resp and *into alone, when the response is not one it takes (see
// ReadResponse). bodyLen is the length of the body that follows the head.
// (Its results are few and small on purpose: see sendOnce in h1.go.)
func parseResponseHead(head []byte, req *http.Request, resp *http.Response, into *httpsyntax.Fields) (bodyLen int64, ok bool) {
	var fields httpsyntax.Fields
	// peekHead checked that every line ends in CRLF. An empty first line
	// ("\r\n\r\n") gives eol 0, an empty status line, which the check
	// below rejects.
	eol := bytes.IndexByte(head, '\n') - 1
	line := head[:eol]
	fields.Raw = head[eol+2 : len(head)-2]
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || len(line) > 12 && line[12] != ' ' || !httpsyntax.FieldValue(line) {
		return 0, false
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 {
		return 0, false
	}
	length := int64(-1)
	closing := false
	for rest := fields.Raw; len(rest) > 0; {
		eol := bytes.IndexByte(rest, '\n') - 1
		field := rest[:eol]
		rest = rest[eol+2:]
		colon := bytes.IndexByte(field, ':')
		if colon < 0 || !httpsyntax.Token(field[:colon]) || !httpsyntax.FieldValue(field[colon+1:]) {
			return 0, false
		}
		kind := httpsyntax.FieldKind(field[:colon])
		switch kind {
		case httpsyntax.TrailerField, httpsyntax.TransferEncodingField:
			return 0, false
		case httpsyntax.LengthField:
			l, ok := httpsyntax.ContentLength(httpsyntax.TrimSpace(field[colon+1:]))
			if !ok || length >= 0 {
				return 0, false // invalid or repeated: http.ReadResponse judges it
			}
			length = l
		case httpsyntax.ConnectionField:
			closing = closing || httpsyntax.HasToken(field[colon+1:], "close")
		}
		fields.Add(kind, field[colon+1:])
	}
	bodyLen = length
	switch {
	case req.Method == http.MethodHead:
		bodyLen = 0 // the length, if any, is the one a GET would get
	case code == http.StatusNoContent || code == http.StatusNotModified:
		length, bodyLen = 0, 0
	case length < 0:
		return 0, false // delimited by the close: http.ReadResponse reads it
	}
	*resp = http.Response{
		Status:        statusText(code, line[9:]),
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		ContentLength: length,
		Close:         closing,
		Request:       req,
	}
	*into = fields
	return bodyLen, true
}

// statusLines holds "200 OK" and the like for every code with a reason
// phrase, so that the usual status costs no allocation.
var statusLines = func() (lines [600]string) {
	for code := 200; code < len(lines); code++ {
		if text := http.StatusText(code); text != "" {
			lines[code] = strconv.Itoa(code) + " " + text
		}
	}
	return lines
}()

// statusText returns status (code and reason as sent) as a string.
func statusText(code int, status []byte) string {
	if s := statusLines[code]; s == string(status) {
		return s
	}
	return string(status)
}
