package main

import (
	"context"
	"fmt"
	"time"
)

// PauseCmd is `turnout pause`: every new request is held, as while the
// app restarts, until `turnout resume`.
type PauseCmd struct {
	Max     time.Duration `help:"Longest the pause holds requests; past it they get the maintenance page until resume (at most 10m)." default:"30s"`
	Message string        `help:"Why (recorded in the history, shown on the status page and on the maintenance page past --max)." placeholder:"TEXT"`
}

// Run pauses traffic.
func (c *PauseCmd) Run(cli *CLI) error {
	if c.Max <= 0 || c.Max > 10*time.Minute {
		return exitWith(exitUsage, "--max %s is out of range: give a duration from 1ms to 10m, such as 30s", c.Max)
	}
	client, err := cli.client()
	if err != nil {
		return err
	}
	if err := client.Pause(context.Background(), c.Max, c.Message); err != nil {
		return err
	}
	fmt.Printf("paused: every request is held until `turnout resume` (past %s they get the maintenance page)\n", c.Max)
	return nil
}

// ResumeCmd is `turnout resume`.
type ResumeCmd struct{}

// Run ends a pause; the held requests go out at the pace the app takes them.
func (c *ResumeCmd) Run(cli *CLI) error {
	client, err := cli.client()
	if err != nil {
		return err
	}
	answer, err := client.Resume(context.Background())
	if err != nil {
		return err
	}
	if !answer.Resumed {
		fmt.Println("not paused: nothing to resume")
		return nil
	}
	fmt.Printf("resumed: %d held requests go out as the app takes them\n", answer.Held)
	return nil
}
