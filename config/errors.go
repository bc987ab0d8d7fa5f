package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Error is one problem in a config file. Line and Col are 1-based; they are 0
// when the problem has no single place in the file (a missing pool, say).
type Error struct {
	File      string
	Line, Col int
	// Msg says what is wrong.
	Msg string
	// Hint says what to do about it.
	Hint string
}

// Error formats e as "file:line:col: message (hint)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (" + e.Hint + ")")
	}
	return b.String()
}

// Errors is every problem found in one config file, in file order. Parse and
// Load return it (as error) whenever a file is refused.
type Errors []*Error

// maxReported is how many problems Errors.Error prints; a line saying how
// many more there are follows. A file with thousands of errors is usually
// not a config file at all, and its first problems say so.
const maxReported = 100

// Error prints one line per problem, the first maxReported of them, then
// "and N more".
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es[:min(len(es), maxReported)] {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	if n := len(es) - maxReported; n > 0 {
		fmt.Fprintf(&b, "\nand %d more errors (fix the ones above first)", n)
	}
	return b.String()
}

// sort orders es by position; errors without a position come last.
func (es Errors) sort() {
	key := func(e *Error) int {
		if e.Line == 0 {
			return 1 << 62
		}
		return e.Line<<20 + e.Col
	}
	slices.SortStableFunc(es, func(a, b *Error) int { return cmp.Compare(key(a), key(b)) })
}

// decodeErrors converts go-toml's errors, which carry their own positions.
func decodeErrors(file string, err error) Errors {
	var missing *toml.StrictMissingError
	if errors.As(err, &missing) {
		var es Errors
		for _, de := range missing.Errors {
			line, col := de.Position()
			es = append(es, &Error{File: file, Line: line, Col: col,
				Msg:  fmt.Sprintf("unknown key %q", strings.Join(de.Key(), ".")),
				Hint: "remove it or check its spelling"})
		}
		return es
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		return Errors{{File: file, Line: line, Col: col,
			Msg:  strings.TrimPrefix(de.Error(), "toml: "),
			Hint: "fix the TOML at this place; strings need quotes, durations are strings such as \"1s\""}}
	}
	return Errors{{File: file, Msg: err.Error()}}
}

// didYouMean returns the candidate closest to word when it is close enough to
// be a likely typo, else "".
func didYouMean(word string, candidates []string) string {
	best, bestDist := "", max(2, len(word)/3)+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(word), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
