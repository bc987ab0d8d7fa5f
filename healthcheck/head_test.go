package healthcheck

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadHead(t *testing.T) {
	cases := []struct {
		name string
		raw  string
		want head
		err  string
	}{
		{name: "content length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", want: head{status: 200, length: 2}},
		{name: "no reason, bare LF", raw: "HTTP/1.1 204\nDate: x\n\n", want: head{status: 204, length: 0}},
		{name: "chunked", raw: "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n", want: head{status: 200, length: -1, chunked: true}},
		{name: "chunked wins over length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", want: head{status: 200, length: -1, chunked: true}},
		{name: "connection close", raw: "HTTP/1.1 503 Busy\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", want: head{status: 503, length: 0, close: true}},
		{name: "no length ends at close", raw: "HTTP/1.1 200 OK\r\n\r\n", want: head{status: 200, length: -1, close: true}},
		{name: "http/1.0 closes", raw: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", want: head{status: 200, length: 2, close: true}},
		{name: "http/1.0 keep-alive", raw: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", want: head{status: 200, length: 2}},
		{name: "304 has no body", raw: "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", want: head{status: 304, length: 0}},
		{name: "interim skipped", raw: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", want: head{status: 200, length: 2}},
		{name: "101 closes", raw: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", want: head{status: 101, length: 0, close: true}},
		{name: "bad status line", raw: "HTTP/2 200 OK\r\n\r\n", err: `malformed HTTP status line "HTTP/2 200 OK"`},
		{name: "bad status code", raw: "HTTP/1.1 2x0 OK\r\n\r\n", err: `malformed HTTP status line "HTTP/1.1 2x0 OK"`},
		{name: "bad length", raw: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: `malformed Content-Length "-1"`},
		{name: "conflicting lengths", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", err: `malformed Content-Length "2"`},
		{name: "unknown encoding", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", err: `unsupported Transfer-Encoding "gzip"`},
		{name: "long line", raw: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("x", 5000) + "\r\n\r\n", err: errLongLine.Error()},
		{name: "truncated", raw: "HTTP/1.1 200 OK\r\nContent-", err: "EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readHead(bufio.NewReaderSize(strings.NewReader(tc.raw), 4096))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("readHead error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("readHead = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
