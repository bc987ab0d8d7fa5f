package upstream

import (
	"bufio"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/turnout/turnout/internal/httpsyntax"
)

// The in-place parser must agree with http.ReadResponse on every head it
// takes, and leave alone those it does not.
var responseHeads = []struct {
	head   string
	method string
	takes  bool
}{
	{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n", "GET", true},
	{"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n", "POST", true},
	{"HTTP/1.1 200\r\nContent-Length: 3\r\n\r\n", "GET", true},
	{"HTTP/1.1 200 OK\r\nContent-Length:  7 \r\nConnection: close\r\n\r\n", "GET", true},
	{"HTTP/1.1 204 No Content\r\n\r\n", "DELETE", true},
	{"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", "GET", true},
	{"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD", true},
	{"HTTP/1.1 200 OK\r\n\r\n", "HEAD", true},
	{"HTTP/1.1 200 OK\r\nX-Odd-name_1: v\tw\r\nContent-Length: 1\r\n\r\n", "GET", true},
	{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 OK\r\n\r\n", "GET", false}, // close-delimited
	{"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET", false},
	{"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", "GET", false},
	{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 OK\r\nBad Name: v\r\nContent-Length: 1\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 OK\r\n folded: v\r\nContent-Length: 1\r\n\r\n", "GET", false},
	{"HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\n", "GET", false},
	{"HTTP/1.1 20x OK\r\nContent-Length: 1\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: -0\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 Fine\r\ncontent-length: 2\r\nconnection: Keep-Alive, CLOSE\r\ndate: x\r\n\r\n", "GET", true},
	{"HTTP/1.1 200 \r\nContent-Length: 2\r\nX-Empty:\r\n\r\n", "GET", true},
	{"HTTP/1.1 599 Whatever\r\nContent-Length: 0\r\n\r\n", "GET", true},
	{"HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: chunked\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nNo-Colon\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 OK\x01\r\nContent-Length: 1\r\n\r\n", "GET", false},
	{"HTTP/1.1 600 OK\r\nContent-Length: 1\r\n\r\n", "GET", false},
	{"HTTP/1.1 199 OK\r\nContent-Length: 1\r\n\r\n", "GET", false},
	{"HTTP/1.1 200OK\r\nContent-Length: 1\r\n\r\n", "GET", false},
	{"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n", "GET", true},
	{"HTTP/1.1 200 OK\r\nContent-Type:  text/event-stream; charset=utf-8\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n", "GET", true},
	{"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Type: text/event-stream\r\nKEEP-ALIVE: timeout=5\r\nContent-Length: 0\r\n\r\n", "GET", true},
	{"HTTP/1.1 200 OK\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTe: trailers\r\nContent-Length: 0\r\n\r\n", "GET", true},
	{"HTTP/1.1 200 OK\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nContent-Length: 0\r\n\r\n", "GET", true},
}

// headerOf is the http.Header that net/http makes of raw header fields:
// canonical names, trimmed values, and no Connection when it says close.
func headerOf(fields []byte, closing bool) http.Header {
	h := http.Header{}
	for _, line := range strings.SplitAfter(string(fields), "\r\n") {
		if name, value, ok := strings.Cut(strings.TrimSuffix(line, "\r\n"), ":"); ok {
			h.Add(name, strings.Trim(value, " \t"))
		}
	}
	if closing {
		h.Del("Connection")
	}
	// net/http's reader adds Cache-Control to an HTTP/1.0-style Pragma; a
	// proxy passes Pragma on as sent and adds nothing.
	if len(h["Pragma"]) > 0 && h["Pragma"][0] == "no-cache" && len(h["Cache-Control"]) == 0 {
		h["Cache-Control"] = []string{"no-cache"}
	}
	return h
}

// parsed is parseResponseHead with the header fields made into a Header.
func parsed(head string, req *http.Request) *http.Response {
	resp := new(http.Response)
	var fields httpsyntax.Fields
	_, ok := parseResponseHead([]byte(head), req, resp, &fields)
	if !ok {
		return nil
	}
	if !strings.HasSuffix(head, string(fields.Raw)+"\r\n") {
		panic("fields are not the head's")
	}
	if want := flagsOf(headerOf(fields.Raw, false)); flagsOf(fields) != want || flagsOf(httpsyntax.FieldsOf(fields.Raw)) != want {
		panic(fmt.Sprintf("%q: flags %+v, FieldsOf's %+v, want %+v", head, flagsOf(fields), flagsOf(httpsyntax.FieldsOf(fields.Raw)), want))
	}
	resp.Header = headerOf(fields.Raw, resp.Close)
	return resp
}

// fieldFlags are Fields without Raw, comparable.
type fieldFlags struct{ date, length, eventStream, hopByHop bool }

// flagsOf returns the flags of Fields, or those a Header should give.
func flagsOf(of any) fieldFlags {
	switch x := of.(type) {
	case httpsyntax.Fields:
		return fieldFlags{x.Date, x.Length, x.EventStream, x.HopByHop}
	case http.Header:
		hop := false
		for _, k := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
			"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
			hop = hop || len(x[k]) > 0
		}
		return fieldFlags{len(x["Date"]) > 0, len(x["Content-Length"]) > 0,
			strings.HasPrefix(x.Get("Content-Type"), "text/event-stream"), hop}
	}
	panic("flagsOf: not Fields nor a Header")
}

func TestParseResponseHeadAgreesWithNetHTTP(t *testing.T) {
	for _, tc := range responseHeads {
		req, _ := http.NewRequest(tc.method, "http://x/", nil)
		got := parsed(tc.head, req)
		if (got != nil) != tc.takes {
			t.Errorf("%q: parsed = %v, want %v", tc.head, got != nil, tc.takes)
			continue
		}
		if got == nil {
			continue
		}
		want, err := http.ReadResponse(bufio.NewReader(strings.NewReader(tc.head)), req)
		if err != nil {
			t.Errorf("%q: taken, but http.ReadResponse fails: %v", tc.head, err)
			continue
		}
		want.Body = nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.head, got, want)
		}
	}
}

func FuzzParseResponseHead(f *testing.F) {
	for _, tc := range responseHeads {
		f.Add(tc.head, tc.method == "HEAD")
	}
	f.Add("HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 0\r\n\r\n", false)
	f.Fuzz(func(t *testing.T, head string, isHead bool) {
		if n, bareLF := httpsyntax.HeadEnd([]byte(head)); bareLF || n != len(head) {
			return // the parser only ever sees one whole head, as peekHead finds it
		}
		method := "GET"
		if isHead {
			method = "HEAD"
		}
		req, _ := http.NewRequest(method, "http://x/", nil)
		got := parsed(head, req)
		if got == nil {
			return
		}
		want, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head)), req)
		if err != nil {
			t.Fatalf("%q: taken, but http.ReadResponse fails: %v", head, err)
		}
		if !httpsyntax.TokenNames(want.Header) {
			// ReadResponse refuses it (ErrBadFieldName) after
			// http.ReadResponse: the in-place parser must not take it.
			t.Fatalf("%q: taken, with a field name that is not a token", head)
		}
		want.Body = nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", head, got, want)
		}
	})
}
