package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fullExample sets every section of the config, as an operator's file
// would (docs/configuration.md lists each key; its example is shorter and
// docs_test.go parses it).
const fullExample = `listen  = ["127.0.0.1:8080"]
control = "/run/turnout/control.sock"
state   = "/var/lib/turnout/state.db"
initial = "A"                 # or: active = "A" to let this file decide
metrics_listen = "127.0.0.1:9090"   # /metrics and the status page; off when absent
# control_listen = "127.0.0.1:9091" # control API on TCP too, with a bearer token
# control_tokens = { deploy = "env:TURNOUT_DEPLOY_TOKEN" }
log_level  = "info"
log_format = "text"           # or "json"

[proxy]
hold_timeout     = "10s"
hold_max         = 10000
upstream_timeout = "60s"
drain_timeout    = "30s"
intercept_errors = false

[switch]
timeout       = "60s"
warm_interval = "250ms"
ready         = "all"        # or a count ("2") or a share ("50%")

[health]                     # defaults for both pools
type             = "http"
path             = "/healthz"
expect_status    = "200-399"
interval         = "1s"
standby_interval = "5s"
timeout          = "1s"
rise             = 3
fall             = 2

[maintenance]
retry_after = "5s"
# page = "/etc/turnout/maintenance.html"

[pools.A]
servers = ["127.0.0.1:9001", "127.0.0.1:9002"]

[pools.B]
servers = ["127.0.0.1:9101", "unix:/run/app-b.sock weight=2"]
[pools.B.health]
path = "/up"
`

// twoPools completes the documents of the error tests into valid files.
const twoPools = `
[pools.A]
servers = ["127.0.0.1:9001"]
[pools.B]
servers = ["127.0.0.1:9101"]
`

func TestParseFullExample(t *testing.T) {
	cfg, err := Parse([]byte(fullExample), "turnout.toml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := cfg.PoolNames(); strings.Join(got, ",") != "A,B" {
		t.Fatalf("PoolNames = %v", got)
	}
	b := cfg.Pools["B"]
	if b.Name != "B" || cfg.Pools["A"].Name != "A" {
		t.Errorf("pool names not set: %q %q", b.Name, cfg.Pools["A"].Name)
	}
	want := Default().Health
	want.Path = "/up"
	h := b.Health
	if h.Type != want.Type || h.Path != want.Path || h.Interval != want.Interval || h.StandbyInterval != want.StandbyInterval ||
		h.Timeout != want.Timeout || h.Rise != want.Rise || h.Fall != want.Fall || h.ExpectStatus.String() != "200-399" {
		t.Errorf("pool B health = %+v, want %+v", h, want)
	}
	if p := cfg.Pools["A"].Health.Path; p != "/healthz" {
		t.Errorf("pool A health path = %q, want /healthz", p)
	}
	if got := b.Servers[1]; got != (Server{Network: "unix", Address: "/run/app-b.sock", Weight: 2}) {
		t.Errorf("pool B server 1 = %+v", got)
	}
	if got := b.Servers[0]; got != (Server{Network: "tcp", Address: "127.0.0.1:9101", Weight: 1}) {
		t.Errorf("pool B server 0 = %+v", got)
	}
	if cfg.Proxy.DialTimeout.D() != 2*time.Second || cfg.Proxy.MaxIdlePerServer != 1024 || cfg.Proxy.Engine != EngineTurnout {
		t.Errorf("defaults not applied: %+v", cfg.Proxy)
	}
	if cfg.InitialPool() != "A" || cfg.Path != "turnout.toml" || len(cfg.Hash) != 12 {
		t.Errorf("InitialPool %q, Path %q, Hash %q", cfg.InitialPool(), cfg.Path, cfg.Hash)
	}
	if cfg.Switch.Ready.String() != "all" || !cfg.Switch.Ready.Satisfied(2, 2) || cfg.Switch.Ready.Satisfied(1, 2) {
		t.Errorf("ready = %+v", cfg.Switch.Ready)
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "broken.html"), []byte("<p>{{.Message</p>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TURNOUT_TEST_UNSET", "")
	tests := []struct {
		name, doc string
		want      string // one line of the error, "t.toml:" prefix left out
	}{
		{"syntax", "listen = [\"a\"\n" + twoPools, `3:1: expected ',' or ']' after array value`},
		{"duplicate key", "log_level = \"info\"\nlog_level = \"warn\"\n" + twoPools, `2:1: `},
		{"unknown key", "[proxy]\nhold_timout = \"1s\"\n" + twoPools,
			`2:1: unknown key "proxy.hold_timout" (did you mean "hold_timeout"?)`},
		{"unknown table", "[helth]\nrise = 2\n" + twoPools, `1:2: unknown key "helth" (did you mean "health"?)`},
		{"unknown key without suggestion", "zzzzzz = 1\n" + twoPools, `1:1: unknown key "zzzzzz" (remove it; valid keys here: listen,`},
		{"bad duration", "[proxy]\nhold_timeout = \"10 seconds\"\n" + twoPools,
			`2:16: proxy.hold_timeout: bad duration "10 seconds" (write a duration such as`},
		{"negative duration", "[switch]\ntimeout = \"-1s\"\n" + twoPools, `2:11: switch.timeout: duration "-1s" is negative`},
		{"duration as integer", "[health]\ninterval = 5\n" + twoPools, `2:12: health.interval is an integer, not a string (write a duration`},
		{"wrong type", "[proxy]\nhold_max = \"lots\"\n" + twoPools, `2:12: proxy.hold_max is a string, not an integer (write a whole number without quotes)`},
		{"bad server address", "[pools.A]\nservers = [\"127.0.0.1:9001\",\n  \"127.0.0.1:99999\"]\n[pools.B]\nservers = [\"b:1\"]\n",
			`3:3: pools.A.servers[1]: bad server "127.0.0.1:99999": port "99999" is not a number from 1 to 65535`},
		{"bad weight", "[pools.A]\nservers = [\"unix:/a.sock weight=0\"]\n[pools.B]\nservers = [\"b:1\"]\n",
			`2:12: pools.A.servers[0]: bad server "unix:/a.sock weight=0": "weight=0" must be weight=N`},
		{"bad listen", "listen = [\"127.0.0.1\"]\n" + twoPools, `1:11: bad listen address: "127.0.0.1" is not host:port`},
		{"third pool", twoPools + "[pools.C]\nservers = [\"c:1\"]\n", `6:8: pool "C" is one too many: turnout switches between exactly two pools (remove [pools.C])`},
		{"one pool", "[pools.A]\nservers = [\"a:1\"]\n", `1:2: 1 pool(s) defined`},
		{"initial names no pool", "initial = \"C\"\n" + twoPools, `1:11: initial = "C" names no pool (use one of "A", "B")`},
		{"active names no pool", "active = \"blue\"\n" + twoPools, `1:10: active = "blue" names no pool`},
		{"pools differ in case", "[pools.a]\nservers = [\"a:1\"]\n[pools.A]\nservers = [\"b:1\"]\n", `3:8: pool names "a" and "A" differ only in case`},
		{"bad pool name", "[pools.\"x y\"]\nservers = [\"a:1\"]\n[pools.B]\nservers = [\"b:1\"]\n", `1:8: pool name "x y" is not allowed`},
		{"no servers", "[pools.A]\nservers = []\n[pools.B]\nservers = [\"b:1\"]\n", `1:8: pool "A" has no servers`},
		{"duplicate server", "[pools.A]\nservers = [\"a:1\", \"a:1 weight=3\"]\n[pools.B]\nservers = [\"b:1\"]\n",
			`2:19: server "a:1" is listed twice in pool "A"`},
		{"tls without cert", "tls_listen = [\":8443\"]\n" + twoPools, `1:1: tls_listen needs tls_cert and tls_key`},
		{"trusted proxy", "trusted_proxies = [\"10.0.0.0/33\"]\n" + twoPools, `1:20: trusted proxy "10.0.0.0/33" is neither`},
		{"log level", "log_level = \"verbose\"\n" + twoPools, `1:13: log_level "verbose" is not one of trace, debug, info, warn, error`},
		{"engine", "[proxy]\nengine = \"nginx\"\n" + twoPools, `2:10: proxy.engine "nginx" is not one of turnout, stdlib (use one of these)`},
		{"engine typo", "[proxy]\nengine = \"stdlb\"\n" + twoPools, `2:10: proxy.engine "stdlb" is not one of turnout, stdlib (did you mean "stdlib"?)`},
		{"empty engine", "[proxy]\nengine = \"\"\n" + twoPools, `2:10: proxy.engine "" is not one of turnout, stdlib`},
		{"health type", twoPools + "[pools.B.health]\ntype = \"udp\"\n", `7:8: pools.B.health.type "udp" is not http or tcp`},
		{"rise zero", "[health]\nrise = 0\n" + twoPools, `2:8: health.rise must be at least 1`},
		{"hold_max zero", "[proxy]\nhold_max = 0\n" + twoPools, `2:12: proxy.hold_max must be at least 1`},
		{"status range", "[health]\nexpect_status = \"200-700\"\n" + twoPools, `2:17: health.expect_status: bad status range "200-700"`},
		{"ready", "[switch]\nready = \"0%\"\n" + twoPools, `2:9: switch.ready: bad ready share "0%"`},
		{"unset env token", "control_listen = \"127.0.0.1:9091\"\ncontrol_tokens = { deploy = \"env:TURNOUT_TEST_UNSET\" }\n" + twoPools,
			`2:29: control token "deploy" reads $TURNOUT_TEST_UNSET, which is unset or empty (export TURNOUT_TEST_UNSET`},
		{"array of tables", "[[pools]]\n" + twoPools, `1:3: [[pools]] is not allowed`},
		{"template", "[maintenance]\npage = \"broken.html\"\n" + twoPools, `2:8: maintenance.page ` + filepath.Join(dir, "broken.html") + ` is not a valid template: template: broken.html:1: `},
		{"missing page", "[maintenance]\npage = \"/nonexistent/page.html\"\n" + twoPools, `2:8: maintenance.page cannot be read`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.doc), filepath.Join(dir, "t.toml"))
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", cfg)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is %T, want Errors: %v", err, err)
			}
			want := filepath.Join(dir, "t.toml") + ":" + tt.want
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(line, want) {
					return
				}
			}
			t.Errorf("error does not have a line starting\n  %s\ngot:\n%v", want, err)
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	doc := `log_level = "loud"
initial = "Z"
[proxy]
hold_timout = "1s"
dial_timeout = "2 s"
[pools.A]
servers = ["a:1", "a:0"]
[pools.B]
servers = ["b:1"]
[pools.C]
servers = ["c:1"]
`
	_, err := Parse([]byte(doc), "t.toml")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T, want Errors: %v", err, err)
	}
	want := []string{"t.toml:1:13:", "t.toml:2:11:", "t.toml:4:1:", "t.toml:5:16:", "t.toml:7:19:", "t.toml:10:8:"}
	if len(es) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(es), len(want), err)
	}
	for i, e := range es {
		if !strings.HasPrefix(e.Error(), want[i]) {
			t.Errorf("error %d = %q, want it at %s", i, e.Error(), want[i])
		}
	}
}

func TestParseResolvesNames(t *testing.T) {
	t.Setenv("TURNOUT_TEST_TOKEN", "s3cret")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "page.html"), []byte("<p>{{.Message}} {{.RetryAfter}}</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := `initial = "blue"
listen = [":0", "[::1]:8080"]
control_listen = "127.0.0.1:9091"
control_tokens = { deploy = "env:TURNOUT_TEST_TOKEN", ci = "plain" }
[maintenance]
page = "page.html"
[pools.Blue]
servers = ["app.internal:80", "[::1]:81 weight=1000"]
[pools.Blue.health]
type = "tcp"
port = 9000
[pools.green]
servers = ["unix:/run/g.sock"]
`
	cfg, err := Parse([]byte(doc), filepath.Join(dir, "t.toml"))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if cfg.Initial != "Blue" || cfg.InitialPool() != "Blue" {
		t.Errorf("Initial = %q, want the pool's own spelling Blue", cfg.Initial)
	}
	if name, ok := cfg.LookupPool("GREEN"); !ok || name != "green" {
		t.Errorf("LookupPool(GREEN) = %q, %v", name, ok)
	}
	if _, ok := cfg.LookupPool("red"); ok {
		t.Error("LookupPool(red) found a pool")
	}
	if cfg.ControlTokens["deploy"] != "s3cret" || cfg.ControlTokens["ci"] != "plain" {
		t.Errorf("tokens = %v", cfg.ControlTokens)
	}
	if cfg.Maintenance.Page != filepath.Join(dir, "page.html") {
		t.Errorf("page = %q, want it resolved next to the config", cfg.Maintenance.Page)
	}
	if h := cfg.Pools["Blue"].Health; h.Type != "tcp" || h.Port != 9000 || h.Path != "/healthz" || h.Rise != 3 {
		t.Errorf("Blue health = %+v", h)
	}
	if s := cfg.Pools["Blue"].Servers[1]; s.Weight != 1000 || s.Key() != "[::1]:81" || s.String() != "[::1]:81 weight=1000" {
		t.Errorf("Blue server 1 = %+v", s)
	}
}

func TestValues(t *testing.T) {
	tests := []struct {
		name, text string
		v          textValue
		want       string // String() after parsing; "" means the text is refused
	}{
		{"duration", "250ms", new(Duration), "250ms"},
		{"duration zero", "0s", new(Duration), "0s"},
		{"duration no unit", "5", new(Duration), ""},
		{"duration negative", "-2s", new(Duration), ""},
		{"status range", "200-399", new(StatusRanges), "200-399"},
		{"status list", "200, 204", new(StatusRanges), "200,204"},
		{"status mixed", "200-299,304", new(StatusRanges), "200-299,304"},
		{"status backwards", "399-200", new(StatusRanges), ""},
		{"status too low", "99", new(StatusRanges), ""},
		{"status empty", "", new(StatusRanges), ""},
		{"ready all", "all", new(Ready), "all"},
		{"ready count", "2", new(Ready), "2"},
		{"ready share", "50%", new(Ready), "50%"},
		{"ready share too big", "101%", new(Ready), ""},
		{"ready zero", "0", new(Ready), ""},
		{"ready word", "most", new(Ready), ""},
		{"server", "127.0.0.1:9001", new(Server), "127.0.0.1:9001"},
		{"server name", "app-1.example.com:80", new(Server), "app-1.example.com:80"},
		{"server v6", "[::1]:80 weight=3", new(Server), "[::1]:80 weight=3"},
		{"server unix", "unix:/run/a.sock", new(Server), "unix:/run/a.sock"},
		{"server relative unix", "unix:run/a.sock", new(Server), ""},
		{"server no port", "127.0.0.1", new(Server), ""},
		{"server port 0", "127.0.0.1:0", new(Server), ""},
		{"server no host", ":80", new(Server), ""},
		{"server bad host", "bad host!:80", new(Server), ""},
		{"server weight too big", "a:1 weight=1001", new(Server), ""},
		{"server junk after", "a:1 backup", new(Server), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.UnmarshalText([]byte(tt.text))
			if tt.want == "" {
				if err == nil {
					t.Fatalf("%q accepted", tt.text)
				}
				return
			}
			if err != nil {
				t.Fatalf("%q refused: %v", tt.text, err)
			}
			if got := tt.v.(interface{ String() string }).String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	d := Default()
	if len(d.Pools) != 0 || d.Listen[0] != "127.0.0.1:8080" || d.Proxy.HoldTimeout.D() != 10*time.Second ||
		d.Health.Rise != 3 || d.Maintenance.Message == "" || d.InitialPool() != "" {
		t.Errorf("Default() = %+v", d)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "turnout.toml")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load of a missing file: %v, want an error naming %s", err, path)
	}
	if err := os.WriteFile(path, []byte(fullExample), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Path != path {
		t.Errorf("Path = %q, want %q", cfg.Path, path)
	}
}

// TestDurationFloors: every duration below its floor is refused with a
// message naming the key, the floor and the value; the floor itself passes.
func TestDurationFloors(t *testing.T) {
	tests := []struct {
		table, key, floor string
	}{
		{"health", "interval", "10ms"},
		{"health", "standby_interval", "10ms"},
		{"health", "timeout", "10ms"},
		{"pools.B.health", "timeout", "10ms"},
		{"pools.B.health", "interval", "10ms"},
		{"switch", "warm_interval", "10ms"},
		{"switch", "timeout", "100ms"},
		{"proxy", "dial_timeout", "10ms"},
		{"proxy", "upstream_timeout", "10ms"},
		{"proxy", "client_header_timeout", "100ms"},
		{"proxy", "client_idle_timeout", "100ms"},
		{"maintenance", "retry_after", "1s"},
	}
	for _, tt := range tests {
		key := tt.table + "." + tt.key
		t.Run(key, func(t *testing.T) {
			doc := func(v string) []byte {
				return []byte(twoPools + fmt.Sprintf("[%s]\n%s = %q\n", tt.table, tt.key, v))
			}
			_, err := Parse(doc("1ns"), "t.toml")
			want := fmt.Sprintf(`%s = "1ns" is below its floor of %s`, key, tt.floor)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "t.toml:7:") {
				t.Errorf("1ns: got %v, want an error at line 7 containing %q", err, want)
			}
			if _, err := Parse(doc(tt.floor), "t.toml"); err != nil {
				t.Errorf("%s (the floor itself): %v", tt.floor, err)
			}
		})
	}
}

// TestNumericHostIsAnIPv4Address: a host whose last label is a number is
// an IPv4 address or an error, never a host name.
func TestNumericHostIsAnIPv4Address(t *testing.T) {
	for _, addr := range []string{"256.1.1.1:80", "1.2.3:80", "01.2.3.4:80", "1.2.3.4.5:80", "10.0.0.300:80"} {
		for _, doc := range []string{
			fmt.Sprintf("listen = [%q]\n", addr) + twoPools,
			fmt.Sprintf("[pools.A]\nservers = [%q]\n[pools.B]\nservers = [\"b:1\"]\n", addr),
		} {
			_, err := Parse([]byte(doc), "t.toml")
			if err == nil || !strings.Contains(err.Error(), "is not an IPv4 address") {
				t.Errorf("%s: got %v, want it refused as not an IPv4 address", addr, err)
			}
		}
	}
	for _, addr := range []string{"255.255.255.255:80", "10.0.0.1:80", "app1.internal:80", "db-1:80", "host.example.com.:80", "2001.example:80"} {
		if _, err := Parse([]byte(fmt.Sprintf("[pools.A]\nservers = [%q]\n[pools.B]\nservers = [\"b:1\"]\n", addr)), "t.toml"); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

// TestEmptyFile: an empty or comment-only file gets a file:line:col error
// saying what to write.
func TestEmptyFile(t *testing.T) {
	for _, doc := range []string{"", "\n\n  \n", "# turnout config\n# nothing yet\n"} {
		_, err := Parse([]byte(doc), "t.toml")
		if err == nil || !strings.HasPrefix(err.Error(), "t.toml:1:1: the config file is empty") || !strings.Contains(err.Error(), "[pools.A]") {
			t.Errorf("%q: got %v, want t.toml:1:1 saying the file is empty and what to write", doc, err)
		}
	}
	_, err := Parse([]byte("log_level = \"info\"\n"), "t.toml")
	if err == nil || !strings.HasPrefix(err.Error(), "t.toml:2:1: no pools defined") {
		t.Errorf("a file without pools: got %v, want t.toml:2:1: no pools defined", err)
	}
}

// TestManyErrorsReportsFirstHundred: 20,000 unknown keys are all found,
// and the message lists the first 100 and counts the rest.
func TestManyErrorsReportsFirstHundred(t *testing.T) {
	_, err := Parse(manyUnknownKeys(20000), "t.toml")
	var es Errors
	if !errors.As(err, &es) || len(es) != 20000 {
		t.Fatalf("got %d errors, want 20000", len(es))
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 101 || lines[100] != "and 19900 more errors (fix the ones above first)" ||
		!strings.HasPrefix(lines[0], `t.toml:1:1: unknown key "unknown_key_0"`) ||
		!strings.HasPrefix(lines[99], `t.toml:100:1: unknown key "unknown_key_99"`) {
		t.Errorf("want 100 lines then the count, got %d lines; first %q, last two %q", len(lines), lines[0], lines[len(lines)-2:])
	}
}

func TestParseEngine(t *testing.T) {
	for _, engine := range []string{EngineTurnout, EngineStdlib} {
		cfg, err := Parse([]byte("[proxy]\nengine = \""+engine+"\"\n"+twoPools), "t.toml")
		if err != nil {
			t.Fatalf("engine %q: %v", engine, err)
		}
		if cfg.Proxy.Engine != engine {
			t.Errorf("engine %q parsed as %q", engine, cfg.Proxy.Engine)
		}
	}
}
