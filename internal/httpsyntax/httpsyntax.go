// Package httpsyntax holds the few HTTP/1.1 syntax checks (RFC 9110) that
// turnout's own request and response parsers share, with the answers
// net/http gives.
package httpsyntax

import (
	"strconv"
	"strings"
)

// tokenByte marks the bytes a token may hold: visible ASCII but delimiters.
var tokenByte = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c)
	}
	return t
}()

// Token reports whether s is a token: a method or a header field name.
func Token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

// FieldValue reports whether s holds no control character but tab.
func FieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// HasToken reports whether the comma-separated list v holds token,
// ignoring case (a Connection header holding "close").
func HasToken(v, token string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.Trim(t, " \t"), token) {
			return true
		}
	}
	return false
}

// ContentLength parses a Content-Length value as net/http does: digits
// only (no sign), at most 2^63-1.
func ContentLength(v string) (int64, bool) {
	if v == "" || v[0] < '0' || v[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 63)
	return int64(n), err == nil
}

// Set is a set of bytes, for checks on the characters of a URL or a host.
type Set [256]bool

// NewSet returns the set of ASCII letters and digits and of the bytes in
// extra.
func NewSet(extra string) *Set {
	var s Set
	for c := '0'; c <= 'z'; c++ {
		s[c] = '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
	}
	for i := 0; i < len(extra); i++ {
		s[extra[i]] = true
	}
	return &s
}

// All reports whether every byte of s is in the set.
func (set *Set) All(s string) bool {
	for i := 0; i < len(s); i++ {
		if !set[s[i]] {
			return false
		}
	}
	return true
}
