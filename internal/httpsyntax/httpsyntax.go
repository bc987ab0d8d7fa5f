// Package httpsyntax holds the few HTTP/1.1 syntax checks (RFC 9110) that
// turnout's own request and response parsers share, with the answers
// net/http gives.
package httpsyntax

import (
	"bytes"
	"math"
	"strings"
)

// tokenByte marks the bytes a token may hold: visible ASCII but delimiters.
var tokenByte = func() (t [256]bool) {
	for c := '!'; c <= '~'; c++ {
		t[c] = !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c)
	}
	return t
}()

// Text is what the checks take: a string, or bytes still in a read buffer.
type Text interface{ ~string | ~[]byte }

// Token reports whether s is a token: a method or a header field name.
func Token[T Text](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

// TokenNames reports whether every name of a parsed header is a token.
// net/http's parsers keep a field whose name ends in whitespace ("Name :"),
// which RFC 9112 section 5.1 forbids: a proxy must not pass it on.
func TokenNames(h map[string][]string) bool {
	for k := range h {
		if !Token(k) {
			return false
		}
	}
	return true
}

// FieldValue reports whether s holds no control character but tab.
//
// It looks at eight bytes at a time: a word with no byte below 0x20 and
// none equal to 0x7f is fine as it is; only one with either (a tab, most
// likely) is looked at byte by byte.
func FieldValue[T Text](s T) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		del := x ^ 0x7f*ones
		// The high bit of a byte below 0x20 (or of a zero one) survives
		// the subtraction and the mask; the check can be wrong only the
		// safe way, for a byte above one that is.
		if ((x-0x20*ones)&^x|(del-ones)&^del)&highs != 0 && !fieldValueBytes(s[i:i+8]) {
			return false
		}
	}
	return fieldValueBytes(s[i:])
}

func fieldValueBytes[T Text](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// HasToken reports whether the comma-separated list v holds token,
// ignoring case (a Connection header holding "close"); token is in lower
// case.
func HasToken[T Text](v T, token string) bool {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		if EqualFold(TrimSpace(v[:i]), token) {
			return true
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return false
}

// HeadEnd returns the length of the message head at the start of buf, up to
// and including the empty line that ends it, or -1 when buf does not hold
// it all yet. bareLF reports a line that ends in LF alone: turnout's parsers
// leave such a head to net/http, which takes it. One pass, a line at a time.
func HeadEnd(buf []byte) (n int, bareLF bool) {
	for i := 0; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return -1, false
		}
		j += i
		if j == 0 || buf[j-1] != '\r' {
			return -1, true
		}
		if j == i+1 && i > 0 {
			return j + 1, false // the empty line
		}
		i = j + 1
	}
}

// ContentLength parses a Content-Length value as net/http does: digits
// only (no sign), at most 2^63-1.
func ContentLength[T Text](v T) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' || n > (math.MaxInt64-uint64(c-'0'))/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return int64(n), true
}

// EqualFold reports whether s is lowerName, ignoring ASCII case;
// lowerName must be in lower case (a header field name).
func EqualFold[T Text](s T, lowerName string) bool {
	if len(s) != len(lowerName) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != lowerName[i] {
			return false
		}
	}
	return true
}

// SameName reports whether a and b are the same field name: equal but for
// ASCII case (never Unicode folding, which net/http does not do either).
func SameName[A, B Text](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// TrimSpace returns s without its leading and trailing spaces and tabs
// (optional whitespace around a field value).
func TrimSpace[T Text](s T) T {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
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

// The header fields that turnout's parsers and writers tell apart; FieldKind
// names them.
const (
	OtherField = iota
	DateField
	LengthField // Content-Length
	TypeField   // Content-Type
	// The hop-by-hop fields (RFC 9110 section 7.6.1), never forwarded:
	// HopByHop reports them.
	ConnectionField
	TransferEncodingField
	TrailerField
	HopField // the others: Keep-Alive, Te, Upgrade and the Proxy- ones
)

// HopByHop reports whether a field of kind k describes one connection, not
// the message.
func HopByHop(k int) bool { return k >= ConnectionField }

// HopByHopName reports whether the field name, in any case, describes one
// connection, not the message: turnout's one list of them.
func HopByHopName[T Text](name T) bool { return HopByHop(FieldKind(name)) }

// FieldKind classifies a field name, in any case; by length first, as most
// names are none of these.
func FieldKind[T Text](name T) int {
	switch len(name) {
	case 2:
		if EqualFold(name, "te") {
			return HopField
		}
	case 4:
		if EqualFold(name, "date") {
			return DateField
		}
	case 7:
		if EqualFold(name, "trailer") {
			return TrailerField
		}
		if EqualFold(name, "upgrade") {
			return HopField
		}
	case 10:
		if EqualFold(name, "connection") {
			return ConnectionField
		}
		if EqualFold(name, "keep-alive") {
			return HopField
		}
	case 12:
		if EqualFold(name, "content-type") {
			return TypeField
		}
	case 14:
		if EqualFold(name, "content-length") {
			return LengthField
		}
	case 16, 18, 19:
		if EqualFold(name, "proxy-connection") || EqualFold(name, "proxy-authenticate") || EqualFold(name, "proxy-authorization") {
			return HopField
		}
	case 17:
		if EqualFold(name, "transfer-encoding") {
			return TransferEncodingField
		}
	}
	return OtherField
}

// Fields are the header fields of a message as its sender wrote them (an
// upstream response that upstream parsed in place), with what a writer
// must know of them: front writes them to the client as they are.
type Fields struct {
	// Raw holds the lines, "Name: value\r\n" each: names in any case,
	// values checked but not trimmed. Nil when the response was not parsed
	// in place.
	Raw         []byte
	Date        bool // a Date field is among them
	Length      bool // a Content-Length field is among them
	EventStream bool // the first Content-Type is text/event-stream
	HopByHop    bool // some are hop-by-hop: to be left out when forwarded
	typed       bool // a Content-Type was seen
}

// FieldsOf returns the Fields of raw, field lines that the parser checked
// (a subset of a response's, say).
func FieldsOf(raw []byte) Fields {
	f := Fields{Raw: raw}
	for rest := raw; len(rest) > 0; {
		eol := bytes.IndexByte(rest, '\n') + 1
		line := rest[:eol-2]
		rest = rest[eol:]
		colon := bytes.IndexByte(line, ':')
		f.Add(FieldKind(line[:colon]), line[colon+1:])
	}
	return f
}

// Add records what a field of kind k with value v tells a writer.
func (f *Fields) Add(k int, v []byte) {
	switch k {
	case OtherField:
	case DateField:
		f.Date = true
	case LengthField:
		f.Length = true
	case TypeField:
		if !f.typed { // the first one counts, as for Header.Get
			f.typed = true
			f.EventStream = bytes.HasPrefix(TrimSpace(v), []byte("text/event-stream"))
		}
	default: // the hop-by-hop kinds
		f.HopByHop = true
	}
}
