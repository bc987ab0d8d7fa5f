package control

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/switcher"
)

// The status page, its JSON and the liveness probe answer on
// metrics_listen, beside /metrics.
func TestStatusPage(t *testing.T) {
	d := ctlStartWith(t, "", Options{}, `metrics_listen = "127.0.0.1:0"`)
	if _, err := d.sw.Switch(context.Background(), switcher.SwitchRequest{To: "B", Actor: "tester", Reason: "release 42"}, nil); err != nil {
		t.Fatal(err)
	}
	base := "http://" + d.addrs.Metrics
	a, b := d.sw.Config().Pools["A"].Servers[0].Address, d.bAddrs[0]

	code, page := get(t, base+"/")
	if code != http.StatusOK {
		t.Fatalf("GET /: %d", code)
	}
	for _, want := range []string{"<html", a, b, ">A<", ">B<", "release 42", "tester", "switched", `http-equiv="refresh"`} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}

	code, body := get(t, base+"/status.json")
	var st api.Status
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
		t.Fatalf("GET /status.json: %d, %v", code, err)
	}
	if st.Active != "B" || len(st.Pools) != 2 {
		t.Errorf("status.json: active %q, %d pools", st.Active, len(st.Pools))
	}

	if code, body := get(t, base+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("GET /healthz: %d %q", code, body)
	}
	if code, _ := get(t, base+"/nope"); code != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", code)
	}
}

// get GETs url and returns the status and the body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	status, body := fetch(t, http.DefaultClient, req)
	return status, string(body)
}
