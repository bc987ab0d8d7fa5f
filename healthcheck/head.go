package healthcheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
)

// head is what a check needs of an HTTP/1.x response head: the status and
// how the body is framed.
type head struct {
	status  int
	length  int64 // body length; -1 when chunked or ending at close
	chunked bool
	close   bool // the server closes the connection after this response
}

// readHead reads a response head from br, skipping 1xx interim responses
// (but not 101). It reads no more of the body than the head itself and
// allocates nothing on a well-formed head, unlike http.ReadResponse, which
// builds a header map a check never looks at.
func readHead(br *bufio.Reader) (head, error) {
	for {
		h, err := readOneHead(br)
		if err != nil || h.status < 100 || h.status >= 200 || h.status == 101 {
			return h, err
		}
	}
}

func readOneHead(br *bufio.Reader) (head, error) {
	h := head{length: -1}
	line, err := readLine(br)
	if err != nil {
		return h, err
	}
	// "HTTP/1.1 200 OK": the reason phrase is optional.
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return h, fmt.Errorf("malformed HTTP status line %q", line)
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return h, fmt.Errorf("malformed HTTP status line %q", line)
		}
		h.status = h.status*10 + int(d-'0')
	}
	http10 := line[7] == '0'
	keepAlive := false
	for {
		line, err := readLine(br)
		if err != nil {
			return h, err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case equalFold(name, "Content-Length"):
			n, ok := parseLength(value)
			if !ok || (h.length >= 0 && n != h.length) {
				return h, fmt.Errorf("malformed Content-Length %q", value)
			}
			h.length = n
		case equalFold(name, "Transfer-Encoding"):
			if !equalFold(value, "chunked") {
				return h, fmt.Errorf("unsupported Transfer-Encoding %q", value)
			}
			h.chunked = true
		case equalFold(name, "Connection"):
			for len(value) > 0 {
				var token []byte
				token, value, _ = bytes.Cut(value, []byte(","))
				token = bytes.TrimSpace(token)
				h.close = h.close || equalFold(token, "close")
				keepAlive = keepAlive || equalFold(token, "keep-alive")
			}
		}
	}
	if http10 && !keepAlive {
		h.close = true
	}
	switch {
	case h.status < 200 || h.status == 204 || h.status == 304:
		h.length, h.chunked = 0, false
	case h.chunked:
		h.length = -1
	case h.length < 0:
		h.close = true // the body ends when the server closes
	}
	if h.status == 101 {
		h.close = true
	}
	return h, nil
}

// errLongLine is a response head line that does not fit the reader's buffer.
var errLongLine = errors.New("HTTP response header line too long")

// readLine returns the next line without its line ending; it is valid until
// the next read from br.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, errLongLine
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// parseLength parses a Content-Length value.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// equalFold reports whether b equals the ASCII string s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
