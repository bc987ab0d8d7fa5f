package pages

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

// response is what a real client received from a page served on loopback.
type response struct {
	status int
	header http.Header
	body   string
}

// serve starts a real server on 127.0.0.1 that answers every request with r's page
// for d, and returns a function that sends one request to it.
func serve(t *testing.T, r *Renderer, d Data) func(method, accept string) response {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.Write(w, req, d)
	}))
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.Timeout = 10 * time.Second
	return func(method, accept string) response {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+"/some/page?x=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, srv.URL, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("read body: %v", err)
		}
		return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
	}
}

func TestWriteStatusAndHeaders(t *testing.T) {
	cases := []struct {
		name       string
		data       Data
		wantStatus int
		wantRetry  string
	}{
		{"maintenance", Data{Status: 503, RetryAfter: 5 * time.Second, RequestID: "req-1"}, 503, "5"},
		{"bad gateway", Data{Status: 502, RetryAfter: 2 * time.Second, RequestID: "req-2"}, 502, "2"},
		{"gateway timeout", Data{Status: 504, RetryAfter: 10 * time.Second, RequestID: "req-3"}, 504, "10"},
		{"intercepted app error", Data{Status: 500, RetryAfter: time.Second}, 500, "1"},
		{"zero status is 503", Data{RetryAfter: 3 * time.Second}, 503, "3"},
		{"fraction rounds up", Data{Status: 503, RetryAfter: 1500 * time.Millisecond}, 503, "2"},
		{"under a second is one", Data{Status: 503, RetryAfter: 100 * time.Millisecond}, 503, "1"},
		{"unset uses the default", Data{Status: 503}, 503, "5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			get := serve(t, New(), tc.data)
			for _, accept := range []string{"", "application/json", "text/plain"} {
				resp := get(http.MethodGet, accept)
				if resp.status != tc.wantStatus {
					t.Errorf("Accept %q: status %d, want %d", accept, resp.status, tc.wantStatus)
				}
				if got := resp.header.Get("Retry-After"); got != tc.wantRetry {
					t.Errorf("Accept %q: Retry-After %q, want %q", accept, got, tc.wantRetry)
				}
				if got := resp.header.Get("Cache-Control"); got != "no-store" {
					t.Errorf("Accept %q: Cache-Control %q, want no-store", accept, got)
				}
				if got := resp.header.Get("Content-Type"); !strings.Contains(got, "charset=utf-8") {
					t.Errorf("Accept %q: Content-Type %q has no charset", accept, got)
				}
				if got := resp.header.Get("X-Request-Id"); got != tc.data.RequestID {
					t.Errorf("Accept %q: X-Request-Id %q, want %q", accept, got, tc.data.RequestID)
				}
			}
		})
	}
}

func TestWriteNegotiatesFormat(t *testing.T) {
	cases := []struct {
		accept   string
		wantType string
	}{
		{"", "text/html"},
		{"*/*", "text/html"},
		{browserAccept, "text/html"},
		{"text/*", "text/html"},
		{"image/png", "text/html"},
		{"application/json, text/html", "text/html"},
		{"text/html;q=0.5, application/json;q=0.4", "text/html"},
		{"application/json", "application/json"},
		{"application/json, text/html;q=0.5", "application/json"},
		{"application/json, text/plain, */*", "application/json"},
		{"Application/JSON; charset=utf-8", "application/json"},
		{"application/json;q=0", "text/html"},
		{"text/plain", "text/plain"},
		{"text/plain, text/html;q=0", "text/plain"},
		{"text/plain, */*;q=0.1", "text/html"},
	}
	get := serve(t, New(), Data{Status: 503, Message: "Back at noon.", RetryAfter: 5 * time.Second, RequestID: "abc"})
	for _, tc := range cases {
		resp := get(http.MethodGet, tc.accept)
		if got := resp.header.Get("Content-Type"); !strings.HasPrefix(got, tc.wantType+";") {
			t.Errorf("Accept %q: Content-Type %q, want %s", tc.accept, got, tc.wantType)
		}
		if !strings.Contains(resp.body, "Back at noon.") {
			t.Errorf("Accept %q: body lacks the message:\n%s", tc.accept, resp.body)
		}
	}
}

func TestJSONBody(t *testing.T) {
	cases := []struct {
		status    int
		wantError string
	}{
		{503, "maintenance"},
		{502, "bad_gateway"},
		{504, "gateway_timeout"},
		{500, "upstream_error"},
	}
	for _, tc := range cases {
		get := serve(t, New(), Data{Status: tc.status, Message: `say "hi" <now>`, RetryAfter: 4200 * time.Millisecond, RequestID: "rid-9"})
		resp := get(http.MethodGet, "application/json")
		var got map[string]any
		if err := json.Unmarshal([]byte(resp.body), &got); err != nil {
			t.Fatalf("status %d: body is not JSON: %v\n%s", tc.status, err, resp.body)
		}
		want := map[string]any{"status": float64(tc.status), "error": tc.wantError, "message": `say "hi" <now>`, "retry_after": float64(5), "request_id": "rid-9"}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("status %d: %s = %v, want %v", tc.status, k, got[k], v)
			}
		}
	}
}

func TestPlainBody(t *testing.T) {
	get := serve(t, New(), Data{Status: 502, RetryAfter: 3 * time.Second, RequestID: "rid-7"})
	resp := get(http.MethodGet, "text/plain")
	for _, want := range []string{"502 Bad Gateway", defaultMessage(502), "Retry in 3 s.", "Request ID: rid-7"} {
		if !strings.Contains(resp.body, want) {
			t.Errorf("plain body lacks %q:\n%s", want, resp.body)
		}
	}
}

func TestHEADHasNoBody(t *testing.T) {
	get := serve(t, New(), Data{Status: 503, RetryAfter: 5 * time.Second, RequestID: "rid-h"})
	for _, accept := range []string{"", "application/json", "text/plain"} {
		resp := get(http.MethodHead, accept)
		if resp.status != 503 || resp.body != "" {
			t.Errorf("HEAD Accept %q: status %d, body %q; want 503 and no body", accept, resp.status, resp.body)
		}
		if resp.header.Get("Retry-After") != "5" || resp.header.Get("X-Request-Id") != "rid-h" {
			t.Errorf("HEAD Accept %q: headers %v lack Retry-After or X-Request-Id", accept, resp.header)
		}
	}
}

func TestBuiltinHTML(t *testing.T) {
	cases := []struct {
		status      int
		message     string
		wantHeading string
		wantText    string
	}{
		{503, "", "We'll be right back", defaultMessage(503)},
		{502, "", "We can't reach the site right now", defaultMessage(502)},
		{504, "", "The site is taking too long to answer", defaultMessage(504)},
		{500, "", "Something went wrong on our side", defaultMessage(500)},
		{503, "<script>alert(1)</script> & more", "We'll be right back", "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"},
	}
	for _, tc := range cases {
		get := serve(t, New(), Data{Status: tc.status, Message: tc.message, RetryAfter: 7 * time.Second, RequestID: "rid<1>"})
		body := get(http.MethodGet, "").body
		html := strings.ReplaceAll(body, "&#39;", "'")
		for _, want := range []string{
			"<h1>" + tc.wantHeading + "</h1>",
			"<title>" + tc.wantHeading + "</title>",
			tc.wantText,
			`Checking again in <span id="count">7</span> s`,
			"var every =  7 ",
			`fetch(location.href, {cache: "no-store"})`,
			`<noscript><meta http-equiv="refresh" content="7"></noscript>`,
			"rid&lt;1&gt;",
		} {
			if !strings.Contains(html, want) {
				t.Errorf("status %d: page lacks %q:\n%s", tc.status, want, body)
			}
		}
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "rid<1>") {
			t.Errorf("status %d: page contains unescaped input:\n%s", tc.status, body)
		}
	}
}

func TestBuiltinHTMLIsSmallAndSelfContained(t *testing.T) {
	if n := len(builtinHTML); n > 8<<10 {
		t.Errorf("built-in page is %d bytes, want it under 8 KiB", n)
	}
	for _, external := range []string{"src=", "href=", "@import", "url("} {
		if strings.Contains(builtinHTML, external) {
			t.Errorf("built-in page references an external asset (%q)", external)
		}
	}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadRendersOperatorTemplate(t *testing.T) {
	path := writeFile(t, "page.html", `<p>{{.Status}}|{{.Message}}|{{.RetryAfter}}|{{.RequestID}}</p>`)
	r, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	get := serve(t, r, Data{Status: 503, Message: "a <b> c", RetryAfter: 2500 * time.Millisecond, RequestID: "rid-op"})
	resp := get(http.MethodGet, browserAccept)
	if want := "<p>503|a &lt;b&gt; c|3|rid-op</p>"; resp.body != want {
		t.Errorf("operator page = %q, want %q", resp.body, want)
	}
	if resp.status != 503 || resp.header.Get("Retry-After") != "3" {
		t.Errorf("operator page: status %d, Retry-After %q", resp.status, resp.header.Get("Retry-After"))
	}
	// Only the HTML is the operator's; JSON keeps its schema.
	if body := get(http.MethodGet, "application/json").body; !strings.Contains(body, `"error":"maintenance"`) {
		t.Errorf("JSON with an operator page = %s", body)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		path string
		want []string
	}{
		{"broken", writeFile(t, "broken.html", "<p>{{.Nope</p>"), []string{"broken.html", "does not parse"}},
		{"fails at execution", writeFile(t, "exec.html", "<p>{{.Missing.Field}}</p>"), []string{"exec.html", "fails to render", "Missing"}},
		{"missing file", filepath.Join(dir, "absent.html"), []string{"absent.html", "no such file", "maintenance.page"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Load(tc.path)
			if err == nil {
				t.Fatalf("Load(%s) = %v, want an error", tc.path, r)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestOperatorTemplateFailureFallsBackToBuiltin(t *testing.T) {
	// Passes the load-time check (503) but fails for a 502.
	path := writeFile(t, "page.html", `<p>operator</p>{{if eq .Status 502}}{{.Missing}}{{end}}`)
	r, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	resp := serve(t, r, Data{Status: 502, RetryAfter: time.Second})(http.MethodGet, "")
	if resp.status != 502 || strings.Contains(resp.body, "operator") || !strings.Contains(resp.body, "right now</h1>") {
		t.Errorf("status %d, body:\n%s\nwant 502 with only the built-in page", resp.status, resp.body)
	}
}

func TestWriteConcurrently(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodGet, "/", nil)
				if i%2 == 0 {
					req.Header.Set("Accept", "application/json")
				}
				r.Write(rec, req, Data{Status: 503, RetryAfter: time.Second})
				if rec.Code != 503 || rec.Body.Len() == 0 {
					t.Errorf("concurrent write: status %d, %d bytes", rec.Code, rec.Body.Len())
					return
				}
			}
		})
	}
	wg.Wait()
}

// discard is a ResponseWriter that keeps nothing, so the benchmark measures rendering.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

func BenchmarkWriteHTML(b *testing.B) {
	r := New()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Accept", browserAccept)
	d := Data{Status: 503, Message: "Back at noon.", RetryAfter: 5 * time.Second, RequestID: "0123456789abcdef"}
	w := &discard{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		r.Write(w, req, d)
	}
}
