package config

import (
	"fmt"
	"strings"
	"testing"
)

// manyUnknownKeys is a valid config plus n unknown top-level keys.
func manyUnknownKeys(n int) []byte {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "unknown_key_%d = %d\n", i, i)
	}
	b.WriteString(twoPools)
	return []byte(b.String())
}

// BenchmarkParseManyErrors prints how Parse scales with the number of
// errors: the time per error should stay flat from 1k to 20k.
func BenchmarkParseManyErrors(b *testing.B) {
	for _, n := range []int{1000, 5000, 20000} {
		doc := manyUnknownKeys(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Parse(doc, "t.toml"); err == nil {
					b.Fatal("Parse accepted unknown keys")
				}
			}
		})
	}
}
