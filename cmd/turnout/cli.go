package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kong"
	"github.com/hashicorp/go-hclog"

	"github.com/turnout/turnout/config"
)

// CLI is turnout's command line (README.md: commands).
type CLI struct {
	Config    string           `help:"Config file." env:"TURNOUT_CONFIG" default:"/etc/turnout/turnout.toml" placeholder:"PATH"`
	Control   string           `help:"Control socket of the daemon (default: the config's control value, else /run/turnout/control.sock)." env:"TURNOUT_CONTROL" placeholder:"ADDR"`
	LogLevel  string           `help:"Log level: trace, debug, info, warn, error (default: the config's log_level)." enum:",trace,debug,info,warn,error" default:""`
	LogFormat string           `help:"Log format: text or json (default: the config's log_format)." enum:",text,json" default:""`
	Version   kong.VersionFlag `help:"Print the version and exit."`

	Serve       ServeCmd       `cmd:"" help:"Run the daemon in the foreground (SIGHUP reloads the config, SIGTERM/SIGINT shut down gracefully)."`
	Switch      SwitchCmd      `cmd:"" help:"Switch traffic to a pool: warm it with fresh health checks, swap, drain the old pool."`
	Status      StatusCmd      `cmd:"" help:"Show the active pool, every server's health and the config in force."`
	History     HistoryCmd     `cmd:"" help:"Show the switch history, newest first."`
	Validate    ValidateCmd    `cmd:"" help:"Check a config file without touching a running daemon."`
	Maintenance MaintenanceCmd `cmd:"" help:"Serve the maintenance page on purpose, or stop doing so."`
	Pause       PauseCmd       `cmd:"" help:"Hold every new request (as during a restart) while you do something short; resume releases them."`
	Resume      ResumeCmd      `cmd:"" help:"End a pause: held requests go out at the pace the app takes them."`
	Demo        DemoCmd        `cmd:"" help:"Run two demo pools and a turnout on loopback, and show what to try."`
	Completion  CompletionCmd  `cmd:"" help:"Print a shell completion script (bash or zsh)."`
}

// logger builds the logger from the flags, falling back to the config's values.
func (c *CLI) logger(cfg *config.Config) hclog.Logger {
	level, format := c.LogLevel, c.LogFormat
	if cfg != nil {
		if level == "" {
			level = cfg.LogLevel
		}
		if format == "" {
			format = cfg.LogFormat
		}
	}
	if level == "" {
		level = "info"
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "turnout",
		Level:      hclog.LevelFromString(level),
		JSONFormat: format == "json",
		Output:     os.Stderr,
	})
}

// loadConfig reads the config, turning its errors into exit code 2.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("config %s is not valid:\n%w", path, err)}
	}
	return cfg, nil
}
