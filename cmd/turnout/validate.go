package main

import "fmt"

// ValidateCmd checks a config file (the global --config) without touching a
// running daemon.
type ValidateCmd struct{}

// Run prints every error with file:line:col and a hint, and exits 2 when
// there is one.
func (v *ValidateCmd) Run(cli *CLI) error {
	cfg, err := loadConfig(cli.Config)
	if err != nil {
		return err
	}
	fmt.Printf("%s is valid: pools %v, active on first start %s\n", cli.Config, cfg.PoolNames(), cfg.InitialPool())
	return nil
}
