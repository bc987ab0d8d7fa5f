package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// get sends a GET with the given headers through turnout and returns the
// response with its body read.
func get(t *testing.T, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, string(body)
}

// checkPage fails unless resp is the maintenance page with status, in the
// content type that starts with contentType.
func checkPage(t *testing.T, resp *http.Response, body string, status int, contentType string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d; body %.300q", resp.StatusCode, status, body)
	}
	if got := resp.Header.Get("Retry-After"); got == "" {
		t.Errorf("no Retry-After header")
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, contentType) {
		t.Errorf("Content-Type %q, want %s", got, contentType)
	}
}

// TestNothingLive: with both servers of the active pool down, a request is
// held for hold_timeout and then gets the maintenance page; past hold_max a
// request gets it while the held one is still held.
func TestNothingLive(t *testing.T) {
	t.Parallel()
	down := []string{freeTCPAddr(t), "unix:" + filepath.Join(shortDir(t), "nobody.sock")}
	tn := startTurnout(t, settings{A: down, Proxy: `hold_timeout = "1s"`})

	t.Run("html after the hold", func(t *testing.T) {
		start := time.Now()
		resp, body := get(t, tn.URL+"/some/page", nil)
		checkPage(t, resp, body, http.StatusServiceUnavailable, "text/html")
		if !strings.Contains(body, "<html") {
			t.Errorf("body is not an HTML page: %.300q", body)
		}
		if held := time.Since(start); held < time.Second {
			t.Errorf("answered after %s, before hold_timeout (1s) ended", held)
		}
	})
	t.Run("json for API clients", func(t *testing.T) {
		resp, body := get(t, tn.URL+"/api", http.Header{"Accept": {"application/json"}})
		checkPage(t, resp, body, http.StatusServiceUnavailable, "application/json")
		var page struct {
			Status int    `json:"status"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil || page.Status != http.StatusServiceUnavailable {
			t.Errorf("body %q is not the JSON page with status 503 (%v)", body, err)
		}
	})
	t.Run("past hold_max at once", func(t *testing.T) {
		// A turnout of its own whose hold outlasts the test: the held
		// request is still held when the next one is answered.
		tn := startTurnout(t, settings{A: down, Proxy: "hold_timeout = \"30s\"\nhold_max = 1"})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		heldDone := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tn.URL+"/held", nil)
			resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
			if err == nil {
				resp.Body.Close()
				err = fmt.Errorf("answered %s", resp.Status)
			}
			heldDone <- err
		}()
		waitHeld(t, tn, 1)
		resp, body := get(t, tn.URL+"/overflow", nil)
		checkPage(t, resp, body, http.StatusServiceUnavailable, "text/html")
		select {
		case err := <-heldDone:
			t.Errorf("the held request ended before the one past hold_max was answered: %v", err)
		default:
		}
	})
}

// waitHeld waits until turnout's status shows n held requests.
func waitHeld(t *testing.T, tn *turnout, n int64) {
	t.Helper()
	pollUntil(t, fmt.Sprintf("%d held requests", n), func() (bool, string) {
		held := fetchStatus(t, tn.Control).Held
		return held == n, fmt.Sprintf("%d held", held)
	})
}

// TestAppErrors: the app's own 500 passes untouched, unless
// intercept_errors replaces it by the page (keeping the status).
func TestAppErrors(t *testing.T) {
	t.Parallel()
	a1 := newBackend(t, "a1", "tcp")
	for _, tc := range []struct {
		name    string
		proxy   string
		wantApp bool
	}{
		{"passed through", "", true},
		{"intercepted", "intercept_errors = true", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := startTurnout(t, settings{A: []string{a1.Spec()}, Proxy: tc.proxy})
			resp, body := get(t, tn.URL+"/status/500", nil)
			if resp.StatusCode != http.StatusInternalServerError {
				t.Errorf("status %d, want 500", resp.StatusCode)
			}
			if got := body == "app error page"; got != tc.wantApp {
				t.Errorf("body %.300q; want the app's own page: %v", body, tc.wantApp)
			}
			if !tc.wantApp {
				checkPage(t, resp, body, http.StatusInternalServerError, "text/html")
			}
		})
	}
}
