package switcher

import (
	"log"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/turnout/turnout/internal/testlog"
)

// TestHandlerPanicLoggedAtError: a panic that net/http recovers in a
// handler is logged at ERROR, not hidden at DEBUG.
func TestHandlerPanicLoggedAtError(t *testing.T) {
	var out testlog.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Debug})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	srv.Config.ErrorLog = log.New(httpErrorLog{logger.Named("http")}, "", 0)
	srv.Start()
	defer srv.Close()
	if resp, err := http.Get(srv.URL); err == nil {
		resp.Body.Close()
	}
	srv.Close() // waits for the handler, and so for its log line
	if len(out.Lines("[ERROR] http: http: panic serving")) != 1 || len(out.Lines("boom")) == 0 {
		t.Errorf("want the panic at ERROR:\n%s", out.Lines(""))
	}
}
