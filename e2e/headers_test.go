package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestForwardedHeaders: turnout sets X-Forwarded-*, replaces an untrusted
// client's X-Forwarded-For, keeps Host and the raw path and query as sent,
// and adds X-Request-Id only where absent.
func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	a1 := newBackend(t, "a1", "unix")
	tn := startTurnout(t, settings{A: []string{a1.Spec()}})

	for _, tc := range []struct {
		name      string
		header    http.Header
		wantReqID string // "" means: any non-empty value
	}{
		{"no request id", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, ""},
		{"request id kept", http.Header{"X-Request-Id": {"abc-123"}}, "abc-123"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, tn.URL+"/a%2Fb?x=1&x=2&y=%20", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "app.example.test"
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got echo
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("%s, body not the backend's echo: %v", resp.Status, err)
			}
			for _, c := range []struct{ what, got, want string }{
				{"Host", got.Host, "app.example.test"},
				{"request URI", got.URI, "/a%2Fb?x=1&x=2&y=%20"},
				{"X-Forwarded-For", got.Header.Get("X-Forwarded-For"), "127.0.0.1"},
				{"X-Forwarded-Proto", got.Header.Get("X-Forwarded-Proto"), "http"},
				{"X-Forwarded-Host", got.Header.Get("X-Forwarded-Host"), "app.example.test"},
			} {
				if c.got != c.want {
					t.Errorf("%s at the backend: %q, want %q", c.what, c.got, c.want)
				}
			}
			if n := len(got.Header.Values("X-Forwarded-For")); n != 1 {
				t.Errorf("%d X-Forwarded-For headers at the backend, want 1", n)
			}
			id := got.Header.Get("X-Request-Id")
			if id == "" || (tc.wantReqID != "" && id != tc.wantReqID) {
				t.Errorf("X-Request-Id at the backend %q, want %q (any when empty, but set)", id, tc.wantReqID)
			}
		})
	}
}
