package e2e

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestSystemdNotify: under systemd (Type=notify) turnout says READY=1 on
// $NOTIFY_SOCKET once its listeners are open.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(shortDir(t), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a := newBackend(t, "A", "tcp")
	c := newCfgSpec(t, []string{a.Spec()}, []string{freeTCPAddr(t)})
	d := serveDaemon(t, writeCfg(t, c), c, "NOTIFY_SOCKET="+sock)
	ln.SetReadDeadline(time.Now().Add(eventTimeout))
	buf := make([]byte, 256)
	n, err := ln.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("notify socket got %q (%v), want READY=1", buf[:n], err)
	}
	if code, _, _, err := proxyGet(d.URL + "/"); err != nil || code != 200 {
		t.Fatalf("after READY=1 the proxy answered %d (%v), want 200", code, err)
	}
}
