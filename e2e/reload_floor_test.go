package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestReloadRefusesDurationBelowFloor is the duration floors on a running
// daemon: an edit to `[health] timeout = "1ns"` (or interval) is not
// applied; status shows why, naming the key, the floor and the value, and
// traffic keeps flowing under the running config.
func TestReloadRefusesDurationBelowFloor(t *testing.T) {
	a := newBackend(t, "A", "tcp")
	c := newCfgSpec(t, []string{a.Spec()}, []string{freeTCPAddr(t)})
	path := writeCfg(t, c)
	d := serveDaemon(t, path, c)
	good := fetchStatus(t, d.Control).Config.Hash

	for _, key := range []string{"timeout", "interval"} {
		text := c.render(t)
		bad := strings.Replace(text, "\n"+key+" ", "\n"+key+" = \"1ns\"\n# was ", 1)
		if bad == text {
			t.Fatalf("the rendered config has no [health] %s line:\n%s", key, text)
		}
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`health.%s = "1ns" is below its floor of 10ms`, key)
		pollUntil(t, "the reload refused", func() (bool, string) {
			st := fetchStatus(t, d.Control)
			return strings.Contains(st.Config.LastError, want), st.Config.LastError
		})
		if st := fetchStatus(t, d.Control); st.Config.Hash != good {
			t.Errorf("the running config changed to %s, want %s kept", st.Config.Hash, good)
		}
		for range 5 {
			if status, backend, _, err := proxyGet(d.URL + "/"); err != nil || status != http.StatusOK || backend != "A" {
				t.Fatalf("request after the refused reload: %d from %q (%v), want 200 from A", status, backend, err)
			}
		}
	}
}
