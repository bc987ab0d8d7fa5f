package httpsyntax

import (
	"bytes"
	"strings"
	"testing"
)

// tchar as RFC 9110 section 5.6.2 lists it.
func tchar(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func TestTokenIsRFC9110(t *testing.T) {
	for c := 0; c < 256; c++ {
		if got := Token(string([]byte{byte(c)})); got != tchar(byte(c)) {
			t.Errorf("Token(%q) = %v", rune(c), got)
		}
	}
	if Token("") || !Token("X-Request-Id") || Token("Bad Name") {
		t.Error("Token on whole names")
	}
}

func TestFieldValue(t *testing.T) {
	if !FieldValue("a b\tc\x80") || FieldValue("a\x00") || FieldValue("a\r\nb") || FieldValue("\x7f") {
		t.Error("FieldValue")
	}
	// Every byte, at every place in a word and in the tail, next to each
	// kind of neighbour (the word-wide check borrows across bytes).
	for c := 0; c < 256; c++ {
		for _, fill := range []byte{'a', 0, '\t', 0x7f, 0x80, 0xff, 0x20, 0x1f} {
			for n := 1; n <= 17; n++ {
				for at := 0; at < n; at++ {
					b := bytes.Repeat([]byte{fill}, n)
					b[at] = byte(c)
					if got, want := FieldValue(b), fieldValueBytes(b); got != want {
						t.Fatalf("FieldValue(%q) = %v, want %v", b, got, want)
					}
					if FieldValue(string(b)) != FieldValue(b) {
						t.Fatalf("FieldValue(%q): string and bytes disagree", b)
					}
				}
			}
		}
	}
}

func FuzzFieldValue(f *testing.F) {
	f.Add([]byte("text/plain; charset=utf-8\t"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if FieldValue(b) != fieldValueBytes(b) {
			t.Fatalf("FieldValue(%q) disagrees with the byte-by-byte check", b)
		}
	})
}

func TestHasToken(t *testing.T) {
	if !HasToken("keep-alive, Close", "close") || HasToken("closed", "close") || HasToken("", "close") {
		t.Error("HasToken")
	}
}

func TestSet(t *testing.T) {
	s := NewSet("-.")
	if !s.All("a-Z.9") || s.All("a/b") || !s.All("") {
		t.Error("Set.All")
	}
}

func TestContentLength(t *testing.T) {
	for v, want := range map[string]bool{"0": true, "12": true, "9223372036854775807": true,
		"": false, "+5": false, "-0": false, " 5": false, "5x": false, "9223372036854775808": false, "18446744073709551616": false, "99999999999999999999": false} {
		if _, ok := ContentLength(v); ok != want {
			t.Errorf("ContentLength(%q) ok = %v, want %v", v, ok, want)
		}
	}
}

func TestContentLengthValue(t *testing.T) {
	if n, ok := ContentLength([]byte("9223372036854775807")); !ok || n != 1<<63-1 {
		t.Errorf("ContentLength(max) = %d, %v", n, ok)
	}
	if n, ok := ContentLength("0042"); !ok || n != 42 {
		t.Errorf("ContentLength(0042) = %d, %v", n, ok)
	}
}

func TestEqualFoldAndTrimSpace(t *testing.T) {
	if !EqualFold([]byte("Content-LENGTH"), "content-length") || EqualFold("content-lengt", "content-length") || EqualFold("Date", "data") {
		t.Error("EqualFold")
	}
	if got := TrimSpace(" \t a b \t"); got != "a b" {
		t.Errorf("TrimSpace = %q", got)
	}
	if got := TrimSpace([]byte("  ")); len(got) != 0 {
		t.Errorf("TrimSpace of blanks = %q", got)
	}
}

func TestSameNameIsASCIIOnly(t *testing.T) {
	if !SameName([]byte("X-Foo"), "x-FOO") || SameName("\u212a-Custom", "K-Custom") || SameName("a", "ab") {
		t.Error("SameName")
	}
}

func TestHeadEnd(t *testing.T) {
	for _, tc := range []struct {
		buf    string
		n      int
		bareLF bool
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, false},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next", 27, false},
		{"GET / HTTP/1.1\r\n\r\n", 18, false},
		{"GET / HTTP/1.1\r\nHost: x\r\n", -1, false},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r", -1, false},
		{"GET / HTTP/1.1\r", -1, false},
		{"", -1, false},
		{"\r\n\r\n", 4, false}, // an empty first line is not the end: the parsers reject the head
		{"GET / HTTP/1.1\nHost: x\n\n", -1, true},
		{"GET / HTTP/1.1\r\nHost: x\n\r\n", -1, true},
		{"GET / HTTP/1.1\r\nHost: x\r\n\n", -1, true},
		{"\n", -1, true},
		{"GET / HTTP/1.1\r\nHost: x\r\rY: z\r\n\r\n", 33, false}, // a lone CR is the parsers' to reject
	} {
		if n, bareLF := HeadEnd([]byte(tc.buf)); n != tc.n || bareLF != tc.bareLF {
			t.Errorf("HeadEnd(%q) = %d, %v; want %d, %v", tc.buf, n, bareLF, tc.n, tc.bareLF)
		}
	}
}

// The hop-by-hop fields are RFC 9110 section 7.6.1's, in any case, whether
// a raw head's bytes or a header map's canonical keys ask.
func TestFieldKind(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind int
		hop  bool
	}{
		{"Connection", ConnectionField, true},
		{"Transfer-Encoding", TransferEncodingField, true},
		{"Trailer", TrailerField, true},
		{"Proxy-Connection", HopField, true},
		{"Keep-Alive", HopField, true},
		{"Proxy-Authenticate", HopField, true},
		{"Proxy-Authorization", HopField, true},
		{"Te", HopField, true},
		{"Upgrade", HopField, true},
		{"Date", DateField, false},
		{"Content-Length", LengthField, false},
		{"Content-Type", TypeField, false},
		{"X-Request-Id", OtherField, false},
		{"Tee", OtherField, false},
		{"Upgraded", OtherField, false},
		{"Set-Cookie", OtherField, false},
		{"", OtherField, false},
	} {
		for _, spelled := range []string{tc.name, strings.ToLower(tc.name), strings.ToUpper(tc.name)} {
			if got := FieldKind([]byte(spelled)); got != tc.kind {
				t.Errorf("FieldKind(%q) = %d, want %d", spelled, got, tc.kind)
			}
			if got := HopByHopName(spelled); got != tc.hop {
				t.Errorf("HopByHopName(%q) = %v, want %v", spelled, got, tc.hop)
			}
		}
	}
}
