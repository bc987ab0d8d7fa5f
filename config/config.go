// Package config owns turnout's configuration file: its schema, defaults,
// strict decoding and validation (Load, Parse, Errors). It reads files and
// environment variables only; it never starts anything and imports no other
// turnout package. A *Config returned by Load or Parse is complete (defaults
// applied, pool health merged, tokens resolved) and must not be changed.
package config

import (
	"slices"
	"strings"
	"time"
)

// Config is a whole turnout configuration. Each field's comment is its user
// documentation: meaning, unit and default.
type Config struct {
	// Path is the file this config was read from ("" for embedded defaults).
	Path string `toml:"-"`
	// Hash is a short hex digest of the file's bytes (the first 12 hex digits of
	// their SHA-256), recorded with each switch.
	Hash string `toml:"-"`

	// Listen is the list of addresses the proxy listens on for client traffic.
	// Default ["127.0.0.1:8080"]. Changing it needs a restart.
	Listen []string `toml:"listen"`
	// TLSListen is the list of addresses that serve HTTPS (HTTP/1.1 and HTTP/2)
	// with TLSCert and TLSKey. Default: none.
	TLSListen []string `toml:"tls_listen"`
	// TLSCert is the PEM certificate file for TLSListen.
	TLSCert string `toml:"tls_cert"`
	// TLSKey is the PEM private key file for TLSListen.
	TLSKey string `toml:"tls_key"`
	// H2C accepts unencrypted HTTP/2 (prior knowledge) on Listen. Default false.
	H2C bool `toml:"h2c"`
	// Control is the unix socket of the control API. Default
	// "/run/turnout/control.sock". Changing it needs a restart.
	Control string `toml:"control"`
	// ControlListen is an optional TCP address for the control API; every request
	// there needs a bearer token from ControlTokens. Default: off.
	ControlListen string `toml:"control_listen"`
	// ControlTokens maps a token's name (the actor in the history) to its value;
	// a value "env:NAME" is read from the environment variable NAME (unset or
	// empty is an error). After loading, every value is the token itself.
	ControlTokens map[string]string `toml:"control_tokens"`
	// State is the bbolt file holding the active pool and the switch history.
	// Default "/var/lib/turnout/state.db". Changing it needs a restart.
	State string `toml:"state"`
	// Initial names the pool that gets traffic on the very first start, when the
	// state file holds no active pool yet. Default: the first pool by name.
	// Matched ignoring case; after loading it holds the pool's own spelling.
	Initial string `toml:"initial"`
	// Active, when set, pins the active pool in this file: editing it runs the
	// switch protocol and `turnout switch` refuses. Default: unset. Matched
	// ignoring case; after loading it holds the pool's own spelling.
	Active string `toml:"active"`
	// MetricsListen is the address of /metrics and the status page. Default: off.
	MetricsListen string `toml:"metrics_listen"`
	// TrustedProxies lists the client addresses or CIDRs whose incoming
	// X-Forwarded-* headers are kept. Default: none (they are replaced).
	TrustedProxies []string `toml:"trusted_proxies"`
	// LogLevel is one of trace, debug, info, warn, error. Default "info".
	LogLevel string `toml:"log_level"`
	// LogFormat is "text" or "json". Default "text".
	LogFormat string `toml:"log_format"`
	// AccessLog logs one line per proxied request. Default false.
	AccessLog bool `toml:"access_log"`

	Proxy       Proxy       `toml:"proxy"`
	Switch      Switch      `toml:"switch"`
	Health      Health      `toml:"health"`
	Maintenance Maintenance `toml:"maintenance"`
	// Pools holds exactly two pools, keyed by name ([A-Za-z0-9_-]{1,32}).
	Pools map[string]*Pool `toml:"pools"`
}

// Proxy holds the data path settings.
type Proxy struct {
	// HoldTimeout is how long a request that cannot be delivered waits for a live
	// server of the active pool before it gets the maintenance page. Default "10s".
	HoldTimeout Duration `toml:"hold_timeout"`
	// HoldMax bounds the number of requests held at once; past it the maintenance
	// page is served at once. Default 10000.
	HoldMax int `toml:"hold_max"`
	// UpstreamTimeout is how long turnout waits for an upstream's response
	// headers before it answers 504. Default "60s".
	UpstreamTimeout Duration `toml:"upstream_timeout"`
	// UpstreamReadTimeout is the longest gap between two reads of an
	// upstream's response body (nginx's proxy_read_timeout); past it both
	// connections are closed, and the client sees a response cut short.
	// Upgraded connections (websockets) have none. Default "60s".
	UpstreamReadTimeout Duration `toml:"upstream_read_timeout"`
	// DialTimeout bounds connecting to an upstream. Default "2s".
	DialTimeout Duration `toml:"dial_timeout"`
	// DrainTimeout is how long requests and upgraded connections on a pool that
	// lost traffic may run before they are closed. Default "30s".
	DrainTimeout Duration `toml:"drain_timeout"`
	// ClientHeaderTimeout bounds reading a client's request headers (slowloris
	// protection). Default "10s".
	ClientHeaderTimeout Duration `toml:"client_header_timeout"`
	// ClientIdleTimeout closes idle client keep-alive connections. Default "75s".
	ClientIdleTimeout Duration `toml:"client_idle_timeout"`
	// ClientBodyTimeout is the longest gap between two reads of a client's
	// request body (as nginx's client_body_timeout); past it the client gets
	// 408 and its connection, and the upstream one the body was going to,
	// are closed. Default "60s". Changing it needs a restart.
	ClientBodyTimeout Duration `toml:"client_body_timeout"`
	// MaxIdlePerServer bounds the idle keep-alive connections kept per upstream
	// server; it should cover the requests in flight at peak, or connections
	// are closed and dialled again. Default 1024.
	MaxIdlePerServer int `toml:"max_idle_per_server"`
	// InterceptErrors replaces the app's own 5xx responses by the maintenance
	// page (keeping their status). Default false: they pass untouched.
	InterceptErrors bool `toml:"intercept_errors"`
	// UnderscoresInHeaders forwards request header fields whose names hold
	// an underscore (X_Forwarded_For). Default false: they are dropped, as
	// nginx does, because CGI and WSGI servers read "_" and "-" alike, so
	// Content_Length could pass for Content-Length behind turnout's back.
	UnderscoresInHeaders bool `toml:"underscores_in_headers"`
	// Engine is what serves the clients on Listen: "turnout" (its own lean
	// HTTP/1.1 server, handing what it does not serve itself to net/http)
	// or "stdlib" (net/http's server for every request, under the same
	// request rules; slower). "stdlib" rules the lean server out when
	// debugging. Default "turnout". Changing it needs a restart.
	Engine string `toml:"engine"`
}

// The values of Proxy.Engine.
const (
	EngineTurnout = "turnout"
	EngineStdlib  = "stdlib"
)

// Switch holds the switch protocol settings.
type Switch struct {
	// Timeout is how long a switch waits for the target pool to become ready
	// before it aborts; `turnout switch --timeout` overrides it. Default "60s".
	Timeout Duration `toml:"timeout"`
	// WarmInterval is the health check interval of a pool being warmed. Default "250ms".
	WarmInterval Duration `toml:"warm_interval"`
	// Ready says when a pool is ready: "all" servers up, a count ("2"), or a
	// share ("50%"). Default "all".
	Ready Ready `toml:"ready"`
}

// Health holds health check settings. The [health] table gives the defaults
// of both pools; a pool's own [pools.NAME.health] overrides field by field
// (a field left out, or zero, is inherited).
type Health struct {
	// Type is "http" (GET Path, check the status and body) or "tcp" (connect).
	// Default "http".
	Type string `toml:"type"`
	// Path is the path of the http check. Default "/healthz".
	Path string `toml:"path"`
	// Host is the Host header of the http check. Default: the server's address.
	Host string `toml:"host"`
	// ExpectStatus is the passing status range, "200-399" or a list "200,204".
	// Default "200-399".
	ExpectStatus StatusRanges `toml:"expect_status"`
	// ExpectBody, when set, must appear in the http check's response body.
	ExpectBody string `toml:"expect_body"`
	// Port, when set, is checked instead of the served port (tcp servers only).
	Port int `toml:"port"`
	// Interval is the check interval of the active pool's servers. Default "1s".
	Interval Duration `toml:"interval"`
	// StandbyInterval is the check interval of the standby pool. Default "5s".
	StandbyInterval Duration `toml:"standby_interval"`
	// Timeout bounds one check. Default "1s".
	Timeout Duration `toml:"timeout"`
	// Rise is the number of consecutive passes that bring a server up. Default 3.
	Rise int `toml:"rise"`
	// Fall is the number of consecutive failures that take a server down. Default 2.
	Fall int `toml:"fall"`
}

// Maintenance holds the maintenance page settings.
type Maintenance struct {
	// RetryAfter is the Retry-After of the maintenance page, and how often the
	// page re-checks by itself. Default "5s".
	RetryAfter Duration `toml:"retry_after"`
	// Page is an HTML template file that replaces the built-in page; it may use
	// {{.Message}}, {{.RetryAfter}}, {{.Status}} and {{.RequestID}}. Default: built in.
	// A relative path is relative to the config file's directory; after loading
	// it is resolved, and the file is known to parse as an html/template.
	Page string `toml:"page"`
	// Message is the default message of the page. Default: a friendly sentence.
	Message string `toml:"message"`
}

// Pool is one upstream pool.
type Pool struct {
	// Name is the pool's name, from its table key.
	Name string `toml:"-"`
	// Servers lists the pool's servers as nginx writes them: "host:port" or
	// "unix:/path/to.sock", optionally followed by " weight=N" (default 1).
	Servers []Server `toml:"servers"`
	// Health is written as overrides of [health] for this pool; after loading
	// it holds the complete settings ([health] with the overrides put over it).
	Health Health `toml:"health"`
}

// Server is one upstream server of a pool.
type Server struct {
	// Network is "tcp" or "unix".
	Network string
	// Address is "host:port" for tcp, the socket path for unix.
	Address string
	// Weight is the server's share in weighted round robin. Default 1.
	Weight int
}

// Key is how the server is written in the config without its weight:
// "host:port" or "unix:/path". A server keeps its health state across
// reloads as long as its key stays.
func (s Server) Key() string {
	if s.Network == "unix" {
		return "unix:" + s.Address
	}
	return s.Address
}

// Duration is a time.Duration written as a string ("1s", "250ms").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// StatusRanges is a set of inclusive HTTP status ranges.
type StatusRanges []StatusRange

// StatusRange is an inclusive range of HTTP statuses.
type StatusRange struct{ Lo, Hi int }

// Contains reports whether code is in one of the ranges.
func (r StatusRanges) Contains(code int) bool {
	for _, x := range r {
		if code >= x.Lo && code <= x.Hi {
			return true
		}
	}
	return false
}

// Ready is the rule that says when a pool is ready for a switch.
type Ready struct {
	// Count, when > 0, is the number of servers that must be up.
	Count int
	// Percent, when > 0, is the share of servers that must be up.
	Percent int
	// raw keeps the text for String.
	raw string
}

// Satisfied reports whether up servers out of total make a pool ready.
// "all" (the default) needs every server up; a pool with no server is never ready.
func (r Ready) Satisfied(up, total int) bool {
	if total == 0 || up == 0 {
		return false
	}
	switch {
	case r.Count > 0:
		return up >= min(r.Count, total)
	case r.Percent > 0:
		return up*100 >= r.Percent*total
	default:
		return up == total
	}
}

func (r Ready) String() string {
	if r.raw == "" {
		return "all"
	}
	return r.raw
}

// DefaultMessage is the maintenance page's message when the config sets none.
const DefaultMessage = "We're updating the site. This page will reload by itself in a moment."

// Default returns the built-in settings every loaded file starts from. It has
// no pools: a caller that runs on defaults alone (the demo) adds two.
func Default() *Config {
	return &Config{
		Listen:    []string{"127.0.0.1:8080"},
		Control:   "/run/turnout/control.sock",
		State:     "/var/lib/turnout/state.db",
		LogLevel:  "info",
		LogFormat: "text",
		Proxy: Proxy{
			HoldTimeout:         Duration(10 * time.Second),
			HoldMax:             10000,
			UpstreamTimeout:     Duration(60 * time.Second),
			UpstreamReadTimeout: Duration(60 * time.Second),
			DialTimeout:         Duration(2 * time.Second),
			DrainTimeout:        Duration(30 * time.Second),
			ClientHeaderTimeout: Duration(10 * time.Second),
			ClientIdleTimeout:   Duration(75 * time.Second),
			ClientBodyTimeout:   Duration(60 * time.Second),
			MaxIdlePerServer:    1024,
			Engine:              EngineTurnout,
		},
		Switch: Switch{
			Timeout:      Duration(60 * time.Second),
			WarmInterval: Duration(250 * time.Millisecond),
		},
		Health: Health{
			Type:            "http",
			Path:            "/healthz",
			ExpectStatus:    StatusRanges{{Lo: 200, Hi: 399}},
			Interval:        Duration(time.Second),
			StandbyInterval: Duration(5 * time.Second),
			Timeout:         Duration(time.Second),
			Rise:            3,
			Fall:            2,
		},
		Maintenance: Maintenance{
			RetryAfter: Duration(5 * time.Second),
			Message:    DefaultMessage,
		},
	}
}

// PoolNames returns the pool names as the config spells them, sorted.
func (c *Config) PoolNames() []string {
	names := make([]string, 0, len(c.Pools))
	for name := range c.Pools {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// LookupPool finds a pool by name, ignoring case, and returns the config's
// spelling of it.
func (c *Config) LookupPool(name string) (string, bool) {
	for _, n := range c.PoolNames() {
		if strings.EqualFold(n, name) {
			return n, true
		}
	}
	return "", false
}

// InitialPool is the pool to serve when the state file names none: Active if
// set, else Initial, else the first pool by name ("" without pools).
func (c *Config) InitialPool() string {
	switch {
	case c.Active != "":
		return c.Active
	case c.Initial != "":
		return c.Initial
	}
	if names := c.PoolNames(); len(names) > 0 {
		return names[0]
	}
	return ""
}

// overlay returns h with every non-zero field of o put over it.
func (h Health) overlay(o Health) Health {
	set(&h.Type, o.Type)
	set(&h.Path, o.Path)
	set(&h.Host, o.Host)
	set(&h.ExpectBody, o.ExpectBody)
	set(&h.Port, o.Port)
	set(&h.Interval, o.Interval)
	set(&h.StandbyInterval, o.StandbyInterval)
	set(&h.Timeout, o.Timeout)
	set(&h.Rise, o.Rise)
	set(&h.Fall, o.Fall)
	if o.ExpectStatus != nil {
		h.ExpectStatus = o.ExpectStatus
	}
	return h
}

// set puts v in *dst unless v is its type's zero value (left out: inherited).
func set[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}
