package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/control"
)

func TestAsExitMapsControlErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code int
		says string
	}{
		{"conflict", &control.Error{Status: 409, Code: api.CodeConflict, Message: "a switch is running"}, exitConflict, "a switch is running"},
		{"pinned", &control.Error{Status: 409, Code: api.CodePinned, Message: "edit the file"}, exitUsage, "edit the file"},
		{"unknown pool", &control.Error{Status: 404, Code: api.CodeUnknownPool, Message: "no pool C"}, exitFailed, "no pool C"},
		{"not the API", &control.Error{Status: 502, Message: "the daemon at x answered 502"}, exitFailed, "answered 502"},
		{"unreachable", &control.UnreachableError{Addr: "/run/c.sock", Err: errors.New("connection refused")}, exitUnreachable,
			"cannot reach the turnout daemon at /run/c.sock (connection refused): start it with `turnout serve`"},
		{"exit error, wrapped", fmt.Errorf("switch: %w", exitWith(exitConflict, "B is not active")), exitConflict, "switch: B is not active"},
		{"other", errors.New("disk full"), exitFailed, "disk full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ee := asExit(tc.err)
			if ee.code != tc.code || !strings.Contains(ee.Error(), tc.says) {
				t.Errorf("exit %d %q; want %d saying %q", ee.code, ee, tc.code, tc.says)
			}
		})
	}
}
