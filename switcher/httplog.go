package switcher

import (
	"strings"

	"github.com/hashicorp/go-hclog"
)

// httpErrorLog is the log of net/http's servers. Their routine complaints
// (TLS handshakes, bad requests, accept retries) go at Debug; a panic in a
// handler, which net/http recovers and reports here, is a bug and goes at
// Error with its stack.
type httpErrorLog struct{ logger hclog.Logger }

func (l httpErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.HasPrefix(msg, "http: panic serving") || strings.HasPrefix(msg, "http2: panic serving") {
		l.logger.Error(msg)
	} else {
		l.logger.Debug(msg)
	}
	return len(p), nil
}
