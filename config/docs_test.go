package config

import (
	"os"
	"strings"
	"testing"
)

// The example config of docs/configuration.md parses, and its pools are
// the ones it shows: the docs cannot drift from the schema unnoticed.
func TestDocsExampleParses(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```toml\n")
	if !ok {
		t.Fatal("docs/configuration.md has no ```toml example")
	}
	example, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("docs/configuration.md's toml example does not end")
	}
	cfg, err := Parse([]byte(example), "docs/configuration.md")
	if err != nil {
		t.Fatalf("docs/configuration.md's example: %v", err)
	}
	if got := strings.Join(cfg.PoolNames(), ","); got != "A,B" {
		t.Fatalf("pools %s, want A,B", got)
	}
}
