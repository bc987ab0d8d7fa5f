package config

import (
	"encoding"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// textValue is a schema type written as a TOML string; expectedForm is the
// hint shown when a value does not parse.
type textValue interface {
	encoding.TextUnmarshaler
	expectedForm() string
}

// UnmarshalText parses a Go duration such as "1s" or "250ms"; negative
// durations are refused.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q", b)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", b)
	}
	*d = Duration(v)
	return nil
}

func (Duration) expectedForm() string { return `write a duration such as "10s", "250ms" or "1m30s"` }

// String formats d like time.Duration ("1.5s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses "200-399", "200,204" or "200-299,304": comma separated
// codes or inclusive ranges of codes from 100 to 599.
func (r *StatusRanges) UnmarshalText(b []byte) error {
	var out StatusRanges
	for part := range strings.SplitSeq(string(b), ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		l, errLo := statusCode(lo)
		h, errHi := l, error(nil)
		if isRange {
			h, errHi = statusCode(hi)
		}
		if err := errors.Join(errLo, errHi); err != nil {
			return fmt.Errorf("bad status range %q: %w", b, err)
		}
		if l > h {
			return fmt.Errorf("status range %q runs backwards", strings.TrimSpace(part))
		}
		out = append(out, StatusRange{Lo: l, Hi: h})
	}
	*r = out
	return nil
}

func statusCode(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 100 || n > 599 {
		return 0, fmt.Errorf("%q is not a status code from 100 to 599", strings.TrimSpace(s))
	}
	return n, nil
}

func (StatusRanges) expectedForm() string {
	return `write codes or ranges such as "200-399" or "200,204"`
}

// String formats r as it is written in the config ("200-299,304").
func (r StatusRanges) String() string {
	parts := make([]string, len(r))
	for i, x := range r {
		parts[i] = strconv.Itoa(x.Lo)
		if x.Hi != x.Lo {
			parts[i] += "-" + strconv.Itoa(x.Hi)
		}
	}
	return strings.Join(parts, ",")
}

// UnmarshalText parses "all", a count of servers ("2", at least 1) or a
// share of servers ("50%", 1 to 100).
func (r *Ready) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "all" {
		*r = Ready{raw: s}
		return nil
	}
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(pct)
		if err != nil || n < 1 || n > 100 {
			return fmt.Errorf("bad ready share %q: it must be from 1%% to 100%%", s)
		}
		*r = Ready{Percent: n, raw: s}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return fmt.Errorf("bad ready rule %q", s)
	}
	*r = Ready{Count: n, raw: s}
	return nil
}

func (Ready) expectedForm() string {
	return `write "all", a count of servers such as "2", or a share such as "50%"`
}

// UnmarshalText parses a server as nginx writes it: "host:port",
// "[::1]:port" or "unix:/abs/path.sock", optionally followed by " weight=N"
// (N from 1 to 1000, default 1).
func (s *Server) UnmarshalText(b []byte) error {
	fields := strings.Fields(string(b))
	if len(fields) == 0 || len(fields) > 2 {
		return fmt.Errorf("bad server %q", b)
	}
	srv := Server{Weight: 1}
	if len(fields) == 2 {
		w, ok := strings.CutPrefix(fields[1], "weight=")
		n, err := strconv.Atoi(w)
		if !ok || err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("bad server %q: %q must be weight=N with N from 1 to 1000", b, fields[1])
		}
		srv.Weight = n
	}
	if path, ok := strings.CutPrefix(fields[0], "unix:"); ok {
		if !filepath.IsAbs(path) {
			return fmt.Errorf("bad server %q: the socket path must be absolute", b)
		}
		srv.Network, srv.Address = "unix", path
	} else {
		if err := checkHostPort(fields[0], false); err != nil {
			return fmt.Errorf("bad server %q: %w", b, err)
		}
		srv.Network, srv.Address = "tcp", fields[0]
	}
	*s = srv
	return nil
}

func (Server) expectedForm() string {
	return `write "host:port", "[::1]:port" or "unix:/path/to.sock", optionally followed by " weight=N"`
}

// String formats s as it is written in the config, weight included when not 1.
func (s Server) String() string {
	if s.Weight > 1 {
		return s.Key() + " weight=" + strconv.Itoa(s.Weight)
	}
	return s.Key()
}

// checkHostPort checks "host:port". A listen address may leave the host
// empty (all interfaces) and use port 0 (any free port); a server may not.
func checkHostPort(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	minPort := 1
	if listen {
		minPort = 0
	}
	if n, err := strconv.Atoi(port); err != nil || n < minPort || n > 65535 {
		return fmt.Errorf("port %q is not a number from %d to 65535", port, minPort)
	}
	if host == "" {
		if listen {
			return nil
		}
		return fmt.Errorf("%q has no host", addr)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if looksNumeric(host) {
		return fmt.Errorf("host %q is not an IPv4 address: write four numbers from 0 to 255 without leading zeros, such as 10.0.0.1", host)
	}
	if validHostname(host) {
		return nil
	}
	return fmt.Errorf("host %q is neither an IP address nor a host name", host)
}

// looksNumeric reports whether h's last label is all digits: no top-level
// domain is, so h is a mistyped IPv4 address (256.1.1.1, 10.0.0), not a name.
func looksNumeric(h string) bool {
	last := strings.TrimSuffix(h, ".")
	last = last[strings.LastIndexByte(last, '.')+1:]
	if last == "" {
		return false
	}
	for _, c := range last {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// validHostname accepts DNS names; '_' is allowed because container and
// service names often use it.
func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
