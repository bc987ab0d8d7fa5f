package main

import (
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

func TestCompletionListsCommandsAndFlags(t *testing.T) {
	parser, err := kong.New(&CLI{})
	if err != nil {
		t.Fatal(err)
	}
	script := bashCompletion(completionWords(parser.Model.Node))
	for _, want := range []string{"complete -F _turnout turnout", `"switch") opts="`, "--expect-active", `"maintenance") opts="on off`} {
		if !strings.Contains(script, want) {
			t.Errorf("completion lacks %q", want)
		}
	}
	// Every command's line has --help once; the fallback line has nothing.
	if strings.Count(script, "--help") != strings.Count(script, `opts="`)-1 {
		t.Errorf("completion repeats or misses --help:\n%s", script)
	}
}
