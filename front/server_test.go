package front

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/turnout/turnout/internal/httpsyntax"
	"github.com/turnout/turnout/internal/testsock"
)

// plainRequest reports whether the front serves the request whose head is
// head itself.
func plainRequest(head []byte) bool {
	fc := &frontConn{header: make(http.Header)}
	return fc.parseRequest(head) != nil
}

func TestFrontLeavesOddRequestsToNetHTTP(t *testing.T) {
	for _, tc := range []struct {
		head string
		want bool
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"GET / HTTP/1.0\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n", false},
		{"GET / HTTP/1.1\r\n\r\n", false},                       // no Host
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false}, // two
		{"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: x\r\nexpect: 100-continue\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: x\r\nX-Bad\x01: v\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: v\x00w\r\n\r\n", false},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
		{"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", false},
		{"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", false},
		{"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -0\r\n\r\n", false},
		// The request rules: left to a vettedConn, which refuses them.
		{"GET /a#f HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"GET /a?b#f HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"GET * HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"GET http://u@x/ HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"GET http://y/ HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"GET x:80 HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: x\r\nX-A : a\r\n\r\n", false},
	} {
		if got := plainRequest([]byte(tc.head)); got != tc.want {
			t.Errorf("plainRequest(%q) = %v, want %v", tc.head, got, tc.want)
		}
	}
}

func TestFrontSurvivesAPanickingHandler(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("a bug")
		}
		io.WriteString(w, "fine")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fr := New(Options{Logger: hclog.NewNullLogger(), Handler: handler, Std: &http.Server{Handler: handler}, HeaderTimeout: time.Second, IdleTimeout: time.Second, BodyTimeout: time.Second})
	go fr.Serve(ln)
	defer func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fr.Shutdown(ctx, func() {})
	}()
	if got := testsock.Exchange(t, ln.Addr().String(), "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n", 1); len(got) != 0 {
		t.Fatalf("a panicking request got an answer: %+v", got)
	}
	if got := testsock.Exchange(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1); len(got) != 1 || testsock.Body(got[0]) != "fine" {
		t.Fatalf("after a panic the front must go on serving: %+v", got)
	}
}

// The front's parser must make of every head it takes what http.ReadRequest
// makes of it (but for Pragma, passed on as sent).
var requestHeads = []string{
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a/b?c=d&e HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
	"GET /a? HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /%41?q=%20 HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET http://other/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
	"GET HTTP://Other:80/ HTTP/1.1\r\nHost: other:80\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-type: text/plain\r\nCookie: a=1\r\ncookie: b=2\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nX-Tab: \ta b\t\r\n\r\n",
}

func TestFrontParsesAsNetHTTPDoes(t *testing.T) {
	for _, head := range requestHeads {
		checkParse(t, head, true)
		checkRules(t, head)
	}
}

// FuzzFrontParse checks the front's parser against net/http's, and
// against the request rules: the intended divergence is that the front
// leaves to net/http, behind a vettedConn, the heads that the rules refuse
// and net/http would take (checkRules).
func FuzzFrontParse(f *testing.F) {
	for _, head := range requestHeads {
		f.Add(head)
	}
	for _, head := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://u@x/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://y/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX : a\r\n\r\n",
	} {
		f.Add(head)
	}
	f.Fuzz(func(t *testing.T, head string) {
		if n, bareLF := httpsyntax.HeadEnd([]byte(head)); bareLF || n != len(head) {
			return // the parser only ever sees one whole head, as readHead finds it
		}
		checkParse(t, head, false)
		checkRules(t, head)
	})
}

// checkParse compares the front's parse of head with http.ReadRequest's;
// must says the front has to take it.
func checkParse(t *testing.T, head string, must bool) {
	t.Helper()
	fc := &frontConn{header: make(http.Header)}
	got := fc.parseRequest([]byte(head))
	if got == nil {
		if must {
			t.Errorf("%q: not taken", head)
		}
		return
	}
	want, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
	if err != nil {
		t.Fatalf("%q: taken, but http.ReadRequest fails: %v", head, err)
	}
	delete(want.Header, "Host")
	if len(want.Header) == 0 {
		want.Header = http.Header{}
	}
	type view struct {
		Method, RequestURI, Proto, Host string
		Major, Minor                    int
		URL                             url.URL
		Header                          http.Header
		ContentLength                   int64
		Close                           bool
	}
	g := view{got.Method, got.RequestURI, got.Proto, got.Host, got.ProtoMajor, got.ProtoMinor, *got.URL, got.Header, got.ContentLength, got.Close}
	w := view{want.Method, want.RequestURI, want.Proto, want.Host, want.ProtoMajor, want.ProtoMinor, *want.URL, want.Header, want.ContentLength, want.Close}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%q:\n got %+v\nwant %+v", head, g, w)
	}
}

// Every head the front takes is one the request rules let through: the
// front may leave a head to net/http, never serve one they refuse.
func checkRules(t *testing.T, head string) {
	t.Helper()
	fc := &frontConn{header: make(http.Header)}
	if fc.parseRequest([]byte(head)) == nil {
		return
	}
	if why, _ := vetHead([]byte(head)); why != "" {
		t.Fatalf("%q: the front takes what the rules refuse: %s", head, why)
	}
}

// A vettedConn gives net/http the bytes as they came, in pieces of any
// size, and refuses what the rules refuse.
func TestVettedConnPassesBytesAsTheyCome(t *testing.T) {
	stream := "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n" +
		"\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 9<<10) + "\r\n\r\n" +
		"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"
	for _, piece := range []int{1, 2, 7, 1000, 4096, 20000} {
		a, b := net.Pipe()
		go func() {
			for s := stream; s != ""; {
				n := min(piece, len(s))
				a.Write([]byte(s[:n]))
				s = s[n:]
			}
			a.Close()
		}()
		vc := &vettedConn{Conn: b}
		got, err := io.ReadAll(vc)
		if err != nil || string(got) != stream {
			t.Errorf("pieces of %d: got %q, %v", piece, got, err)
		}
	}

	refused := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	a, b := net.Pipe()
	go func() { a.Write([]byte(refused)); a.Close() }()
	got, err := io.ReadAll(&vettedConn{Conn: b, logger: hclog.NewNullLogger()})
	want := refused[:strings.Index(refused, "helloPOST")+5] + string(refusedHead)
	if err != nil || string(got) != want {
		t.Errorf("refused: got %q, %v; want %q", got, err, want)
	}
}

// FuzzVettedConn: whatever comes, a vettedConn gives net/http the bytes as
// they came, up to a head it refuses, which it replaces by refusedHead and
// ends there.
func FuzzVettedConn(f *testing.F) {
	f.Add("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", uint8(3))
	f.Add("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nxGET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", uint8(1))
	f.Fuzz(func(t *testing.T, stream string, piece uint8) {
		a, b := net.Pipe()
		go func() {
			for s := stream; s != ""; {
				n := min(int(piece)+1, len(s))
				if _, err := a.Write([]byte(s[:n])); err != nil {
					break
				}
				s = s[n:]
			}
			a.Close()
		}()
		got, err := io.ReadAll(&vettedConn{Conn: b, logger: hclog.NewNullLogger()})
		b.Close()
		if err != nil {
			t.Fatal(err)
		}
		if s := string(got); s != stream {
			passed, refused := strings.CutSuffix(s, string(refusedHead))
			if !refused || !strings.HasPrefix(stream, passed) {
				t.Fatalf("%q came out as %q", stream, got)
			}
		}
	})
}
