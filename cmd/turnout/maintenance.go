package main

import (
	"context"
	"fmt"
)

// MaintenanceCmd turns the maintenance page on or off for every request;
// the daemon persists the mode across restarts.
type MaintenanceCmd struct {
	On  MaintenanceOnCmd  `cmd:"" help:"Serve the maintenance page to every request."`
	Off MaintenanceOffCmd `cmd:"" help:"Stop serving the maintenance page; traffic goes to the active pool again."`
}

// MaintenanceOnCmd is `turnout maintenance on`.
type MaintenanceOnCmd struct {
	Message string `help:"Text shown on the page (default: the page's own wording)." placeholder:"TEXT"`
}

// Run turns maintenance mode on.
func (c *MaintenanceOnCmd) Run(cli *CLI) error {
	if err := setMaintenance(cli, true, c.Message); err != nil {
		return err
	}
	fmt.Println("maintenance mode on: every request gets the maintenance page; `turnout maintenance off` ends it")
	return nil
}

// MaintenanceOffCmd is `turnout maintenance off`.
type MaintenanceOffCmd struct{}

// Run turns maintenance mode off.
func (c *MaintenanceOffCmd) Run(cli *CLI) error {
	if err := setMaintenance(cli, false, ""); err != nil {
		return err
	}
	fmt.Println("maintenance mode off: traffic goes to the active pool")
	return nil
}

func setMaintenance(cli *CLI, on bool, message string) error {
	client, err := cli.client()
	if err != nil {
		return err
	}
	return client.Maintenance(context.Background(), on, message)
}
