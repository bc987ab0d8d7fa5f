package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/turnout/turnout/state"
)

// HistoryCmd shows the persisted switch history; --json prints the records
// as docs/control-api.md describes them.
type HistoryCmd struct {
	Limit int    `help:"How many records, newest first (0: all)." default:"20"`
	JSON  bool   `help:"Print a JSON list."`
	State string `help:"Read this state file directly instead of asking the daemon (only while no daemon runs)." placeholder:"PATH" type:"path"`
}

// Run prints the history from the daemon, or from the state file.
func (c *HistoryCmd) Run(cli *CLI) error {
	if c.Limit < 0 {
		return exitWith(exitUsage, "--limit %d is negative: pass a count, or 0 for the whole history", c.Limit)
	}
	var recs []state.Record
	if c.State != "" {
		store, err := state.OpenReadOnly(c.State, time.Second)
		if err != nil {
			// The error says what to do, including "drop --state" when a daemon holds the file.
			return &exitError{code: exitUsage, err: err}
		}
		defer store.Close()
		if recs, err = store.History(c.Limit); err != nil {
			return err
		}
	} else {
		client, err := cli.client()
		if err != nil {
			return err
		}
		if recs, err = client.History(context.Background(), c.Limit); err != nil {
			return err
		}
	}
	if c.JSON {
		if recs == nil {
			recs = []state.Record{}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(recs)
	}
	printHistory(os.Stdout, recs)
	return nil
}

func printHistory(out io.Writer, recs []state.Record) {
	if len(recs) == 0 {
		fmt.Fprintln(out, "no switches recorded yet")
		return
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tTIME\tFROM → TO\tRESULT\tWARM\tACTOR\tREASON")
	for _, r := range recs {
		fmt.Fprintf(w, "%d\t%s\t%s → %s\t%s\t%.1fs\t%s\t%s\n", r.ID, r.RequestedAt.Local().Format(time.DateTime),
			r.From, r.To, r.Result, float64(r.WarmMS)/1000, r.Actor, r.Reason)
	}
	w.Flush()
}
