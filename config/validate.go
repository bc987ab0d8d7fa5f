package config

import (
	"fmt"
	"html/template"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2/unstable"
)

var poolNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// check completes a decoded config (pool names, merged health, tokens from
// the environment, the page path) and records every semantic problem.
func (s *scan) check(c *Config) {
	s.checkAddrs(c)
	s.checkTokens(c)
	s.checkEnum("log_level", c.LogLevel, "trace", "debug", "info", "warn", "error")
	s.checkEnum("log_format", c.LogFormat, "text", "json")
	s.checkEnum("proxy.engine", c.Proxy.Engine, EngineTurnout, EngineStdlib)
	for key, d := range map[string]Duration{
		"proxy.upstream_timeout": c.Proxy.UpstreamTimeout, "proxy.dial_timeout": c.Proxy.DialTimeout,
		"proxy.client_header_timeout": c.Proxy.ClientHeaderTimeout, "proxy.client_idle_timeout": c.Proxy.ClientIdleTimeout,
		"proxy.client_body_timeout": c.Proxy.ClientBodyTimeout, "proxy.upstream_read_timeout": c.Proxy.UpstreamReadTimeout,
		"switch.timeout": c.Switch.Timeout, "switch.warm_interval": c.Switch.WarmInterval,
		"maintenance.retry_after": c.Maintenance.RetryAfter,
	} {
		s.checkFloor(key, d)
	}
	if c.Proxy.HoldMax < 1 {
		s.errorAt("proxy.hold_max", "proxy.hold_max must be at least 1", "the default is 10000")
	}
	if c.Proxy.MaxIdlePerServer < 1 {
		s.errorAt("proxy.max_idle_per_server", "proxy.max_idle_per_server must be at least 1", "the default is 1024")
	}
	s.checkHealth("health", c.Health, false)
	s.checkPools(c)
	s.checkPage(c)
}

func (s *scan) checkAddrs(c *Config) {
	lists := map[string][]string{"listen": c.Listen, "tls_listen": c.TLSListen}
	for key, addrs := range lists {
		for i, a := range addrs {
			if err := checkHostPort(a, true); err != nil {
				s.errorAt(fmt.Sprintf("%s[%d]", key, i), fmt.Sprintf("bad %s address: %v", key, err),
					`write "host:port" such as "127.0.0.1:8080" or ":8080"`)
			}
		}
	}
	for key, a := range map[string]string{"control_listen": c.ControlListen, "metrics_listen": c.MetricsListen} {
		if a == "" {
			continue
		}
		if err := checkHostPort(a, true); err != nil {
			s.errorAt(key, fmt.Sprintf("bad %s address: %v", key, err), `write "host:port" such as "127.0.0.1:9090"`)
		}
	}
	if len(c.TLSListen) > 0 && (c.TLSCert == "" || c.TLSKey == "") {
		s.errorAt("tls_listen", "tls_listen needs tls_cert and tls_key", "set both to PEM files, or remove tls_listen")
	}
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParseAddr(p); err == nil {
			continue
		}
		if _, err := netip.ParsePrefix(p); err != nil {
			s.errorAt(fmt.Sprintf("trusted_proxies[%d]", i), fmt.Sprintf("trusted proxy %q is neither an IP address nor a CIDR", p),
				`write an address such as "10.0.0.1" or a network such as "10.0.0.0/8"`)
		}
	}
}

// checkTokens replaces "env:NAME" token values by the variable's value.
func (s *scan) checkTokens(c *Config) {
	for name, v := range c.ControlTokens {
		key := "control_tokens." + name
		if env, ok := strings.CutPrefix(v, "env:"); ok {
			v = os.Getenv(env)
			if v == "" {
				s.errorAt(key, fmt.Sprintf("control token %q reads $%s, which is unset or empty", name, env),
					fmt.Sprintf("export %s in turnout's environment", env))
				continue
			}
			c.ControlTokens[name] = v
		}
		if v == "" {
			s.errorAt(key, fmt.Sprintf("control token %q is empty", name), "set a long random secret")
		}
	}
	if c.ControlListen != "" && len(c.ControlTokens) == 0 {
		s.errorAt("control_listen", "control_listen needs at least one token in control_tokens",
			`add control_tokens = { deploy = "env:TURNOUT_DEPLOY_TOKEN" }`)
	}
}

func (s *scan) checkEnum(key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		hint := "use one of these"
		if m := didYouMean(v, allowed); m != "" {
			hint = fmt.Sprintf("did you mean %q?", m)
		}
		s.errorAt(key, fmt.Sprintf("%s %q is not one of %s", key, v, strings.Join(allowed, ", ")), hint)
	}
}

// Floors are the smallest values durations accept. Below them a setting
// cannot do what it says on a real machine, so a typo such as "1ns" must
// not reach the request path:
//   - floorUpstream (10ms) for health checks, dials and upstream answers:
//     one check or connect on loopback takes well under a millisecond, but
//     a busy host delays a goroutine or pauses for GC by milliseconds, so a
//     shorter timeout fails healthy servers (and the proxy answers 503); a
//     shorter interval sends over 100 checks a second to each server without
//     noticing a failure any sooner.
//   - floorClient (100ms) for client timeouts and switch.timeout: a client's
//     head arrives a network round trip after it connects, tens to hundreds
//     of milliseconds away; a switch needs rise checks at warm_interval.
//   - floorRetryAfter (1s): Retry-After counts whole seconds.
const (
	floorUpstream   = 10 * time.Millisecond
	floorClient     = 100 * time.Millisecond
	floorRetryAfter = time.Second
)

// durationFloors is the floor of each duration key, by its last part.
var durationFloors = map[string]time.Duration{
	"interval": floorUpstream, "standby_interval": floorUpstream, "warm_interval": floorUpstream,
	"dial_timeout": floorUpstream, "upstream_timeout": floorUpstream, "upstream_read_timeout": floorUpstream,
	"client_header_timeout": floorClient, "client_idle_timeout": floorClient, "client_body_timeout": floorClient,
	"retry_after": floorRetryAfter,
}

// floorOf is the floor of the duration at key (health.timeout and
// switch.timeout share a last part, not a floor).
func floorOf(key string) time.Duration {
	switch {
	case key == "switch.timeout":
		return floorClient
	case strings.HasSuffix(key, "health.timeout"):
		return floorUpstream
	}
	return durationFloors[key[strings.LastIndexByte(key, '.')+1:]]
}

// checkFloor reports a duration under its key's floor (and zero for keys
// without one), naming the key, the floor and the value.
func (s *scan) checkFloor(key string, d Duration) {
	floor := floorOf(key)
	switch {
	case floor > 0 && d.D() < floor:
		s.errorAt(key, fmt.Sprintf("%s = %q is below its floor of %s", key, d, floor),
			fmt.Sprintf("use %s or more; shorter values cannot work on a real host (see the configuration reference)", floor))
	case d <= 0:
		s.errorAt(key, key+" must be more than zero", `write a duration such as "1s"`)
	}
}

// checkHealth checks health settings at prefix. For a pool's own table
// (inherits) a zero field means "inherited" and is not checked.
func (s *scan) checkHealth(prefix string, h Health, inherits bool) {
	if (!inherits || h.Type != "") && h.Type != "http" && h.Type != "tcp" {
		s.errorAt(prefix+".type", fmt.Sprintf("%s.type %q is not http or tcp", prefix, h.Type), `use "http" or "tcp"`)
	}
	if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
		s.errorAt(prefix+".path", fmt.Sprintf("%s.path %q does not start with /", prefix, h.Path), `write a path such as "/healthz"`)
	}
	if h.Port < 0 || h.Port > 65535 {
		s.errorAt(prefix+".port", fmt.Sprintf("%s.port %d is not from 0 to 65535", prefix, h.Port), "leave it out to check the served port")
	}
	for key, n := range map[string]int{"rise": h.Rise, "fall": h.Fall} {
		if (!inherits || n != 0) && n < 1 {
			s.errorAt(prefix+"."+key, fmt.Sprintf("%s.%s must be at least 1", prefix, key), "count of consecutive checks, such as 2")
		}
	}
	for key, d := range map[string]Duration{"interval": h.Interval, "standby_interval": h.StandbyInterval, "timeout": h.Timeout} {
		if !inherits || d != 0 {
			s.checkFloor(prefix+"."+key, d)
		}
	}
}

func (s *scan) checkPools(c *Config) {
	const pair = "turnout switches between exactly two pools"
	if len(s.pools) == 0 {
		// Point at the end of the file, where they are missing.
		s.add(unstable.Position{Line: len(s.lineStarts), Column: 1}, fmt.Sprintf("no pools defined: %s", pair),
			`add two tables such as [pools.A] and [pools.B], each with servers = ["host:port"]`)
	} else if len(s.pools) < 2 {
		s.errorAt("pools", fmt.Sprintf("%d pool(s) defined: %s", len(s.pools), pair),
			`add two tables such as [pools.A] and [pools.B], each with servers = ["host:port"]`)
	}
	seen := map[string]string{}
	for i, name := range s.pools {
		key := "pools." + name
		if i >= 2 {
			s.errorAt(key, fmt.Sprintf("pool %q is one too many: %s", name, pair), fmt.Sprintf("remove [%s]", key))
		}
		if !poolNameRE.MatchString(name) {
			s.errorAt(key, fmt.Sprintf("pool name %q is not allowed", name), "use 1 to 32 letters, digits, '-' or '_'")
		}
		if other, dup := seen[strings.ToLower(name)]; dup {
			s.errorAt(key, fmt.Sprintf("pool names %q and %q differ only in case", other, name), "pool names are matched ignoring case: rename one")
		}
		seen[strings.ToLower(name)] = name
		p := c.Pools[name]
		if p == nil {
			continue
		}
		p.Name = name
		if len(p.Servers) == 0 && !s.bad[key+".servers"] {
			s.errorAt(key, fmt.Sprintf("pool %q has no servers", name), fmt.Sprintf(`add servers = ["127.0.0.1:9001"] to [%s]`, key))
		}
		first := map[string]bool{}
		for j, srv := range p.Servers {
			if first[srv.Key()] {
				s.errorAt(fmt.Sprintf("%s.servers[%d]", key, j), fmt.Sprintf("server %q is listed twice in pool %q", srv.Key(), name),
					"list it once; use weight=N to give it a bigger share")
			}
			first[srv.Key()] = true
		}
		s.checkHealth(key+".health", p.Health, true)
		p.Health = c.Health.overlay(p.Health)
	}
	for key, v := range map[string]*string{"initial": &c.Initial, "active": &c.Active} {
		if *v == "" {
			continue
		}
		name, ok := c.LookupPool(*v)
		if !ok {
			s.errorAt(key, fmt.Sprintf("%s = %q names no pool", key, *v), fmt.Sprintf("use one of %s", quoteAll(s.pools)))
			continue
		}
		*v = name
	}
}

// checkPage resolves maintenance.page against the config's directory and
// parses it as the pages package will.
func (s *scan) checkPage(c *Config) {
	page := c.Maintenance.Page
	if page == "" {
		return
	}
	if !filepath.IsAbs(page) && c.Path != "" {
		page = filepath.Join(filepath.Dir(c.Path), page)
		c.Maintenance.Page = page
	}
	text, err := os.ReadFile(page)
	if err != nil {
		s.errorAt("maintenance.page", fmt.Sprintf("maintenance.page cannot be read: %v", err), "fix the path or the file's permissions")
		return
	}
	if _, err := template.New(filepath.Base(page)).Parse(string(text)); err != nil {
		s.errorAt("maintenance.page", fmt.Sprintf("maintenance.page %s is not a valid template: %v", page, err),
			"fix the template; it may use {{.Message}}, {{.RetryAfter}}, {{.Status}} and {{.RequestID}}")
	}
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
