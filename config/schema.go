package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// scan walks the document's syntax tree against the Config schema. go-toml's
// decoder stops at the first bad value, so this walk is what finds every
// unknown key, wrong type and bad value at once, with positions; it also
// records where each key and value is, for the checks made after decoding.
type scan struct {
	file string
	errs Errors
	// keyPos is where each key path ("pools.B") first appears.
	keyPos map[string]unstable.Position
	// valPos is where each value is; array elements are "path[i]".
	valPos map[string]unstable.Position
	// pools lists the pool names in the order the file introduces them.
	pools []string
	// bad holds the paths whose expressions were blanked out before decoding.
	bad map[string]bool
	// blank holds the byte ranges decoding must skip: expressions with errors.
	blank []unstable.Range
	// lineStarts holds the offset of each line's first byte, so that a
	// position costs a binary search (go-toml's Shape rescans the document
	// from its start, which made many errors quadratic).
	lineStarts []int
	// exprs counts the document's tables and key = value lines.
	exprs int
}

var configType = reflect.TypeFor[Config]()

func scanDocument(data []byte, file string) *scan {
	s := &scan{file: file, keyPos: map[string]unstable.Position{},
		valPos: map[string]unstable.Position{}, bad: map[string]bool{}, lineStarts: []int{0}}
	for i, c := range data {
		if c == '\n' {
			s.lineStarts = append(s.lineStarts, i+1)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	tableType, tableBad := configType, false
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != unstable.Comment {
			s.exprs++
		}
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			keys := keyNodes(e)
			before := len(s.errs)
			t, path, ok := s.resolve(&p, configType, nil, keys)
			switch {
			case !ok:
			case e.Kind == unstable.ArrayTable:
				s.add(s.pos(keys[0].Raw), fmt.Sprintf("[[%s]] is not allowed", strings.Join(path, ".")),
					fmt.Sprintf("write [%s] with single brackets", strings.Join(path, ".")))
			case !isTable(t):
				s.add(s.pos(keys[0].Raw), fmt.Sprintf("%q is a value, not a table", strings.Join(path, ".")),
					"set it with key = value in its parent table")
			}
			table, tableType, tableBad = path, t, len(s.errs) > before
			if tableBad {
				s.bad[strings.Join(path, ".")] = true
				s.blank = append(s.blank, lineOf(data, keys[0].Raw.Offset))
			}
		case unstable.KeyValue:
			before := len(s.errs)
			path := s.keyValue(&p, tableType, table, e, tableBad)
			if tableBad || len(s.errs) > before {
				s.bad[strings.Join(path, ".")] = true
				s.blank = append(s.blank, e.Raw)
			}
		}
	}
	return s
}

// pos is the line and column (1-based, in bytes, as go-toml counts them) of
// the start of r.
func (s *scan) pos(r unstable.Range) unstable.Position {
	off := int(r.Offset)
	line, _ := slices.BinarySearch(s.lineStarts, off+1) // lines starting at or before off
	return unstable.Position{Offset: off, Line: line, Column: off - s.lineStarts[line-1] + 1}
}

func (s *scan) add(pos unstable.Position, msg, hint string) {
	s.errs = append(s.errs, &Error{File: s.file, Line: pos.Line, Col: pos.Column, Msg: msg, Hint: hint})
}

// resolve follows keys from type t at path base, recording positions. It
// reports an unknown key (with a suggestion) and returns ok=false then.
func (s *scan) resolve(p *unstable.Parser, t reflect.Type, base []string, keys []*unstable.Node) (reflect.Type, []string, bool) {
	path := append([]string(nil), base...)
	for _, k := range keys {
		name := string(k.Data)
		path = append(path, name)
		pos := s.pos(k.Raw)
		joined := strings.Join(path, ".")
		if _, seen := s.keyPos[joined]; !seen {
			s.keyPos[joined] = pos
			if len(path) == 2 && path[0] == "pools" {
				s.pools = append(s.pools, name)
			}
		}
		if !isTable(t) {
			s.add(pos, fmt.Sprintf("%q is a value, not a table", strings.Join(path[:len(path)-1], ".")),
				"remove the dotted part after it")
			return nil, path, false
		}
		next, ok := child(t, name)
		if !ok {
			hint := "remove it; valid keys here: " + strings.Join(fieldNames(t), ", ")
			if m := didYouMean(name, fieldNames(t)); m != "" {
				hint = fmt.Sprintf("did you mean %q?", m)
			}
			s.add(pos, fmt.Sprintf("unknown key %q", joined), hint)
			return nil, path, false
		}
		t = next
	}
	return t, path, true
}

// keyValue checks one key = value against the table type t at path table.
// With skip set, the table itself was refused and only positions are kept.
func (s *scan) keyValue(p *unstable.Parser, t reflect.Type, table []string, e *unstable.Node, skip bool) []string {
	keys := keyNodes(e)
	if skip {
		return append(append([]string(nil), table...), string(keys[len(keys)-1].Data))
	}
	vt, path, ok := s.resolve(p, t, table, keys)
	if ok {
		s.value(p, e.Value(), vt, path, s.pos(keys[len(keys)-1].Raw))
	}
	return path
}

// value checks node n against type t; at is used when n has no position of
// its own (arrays).
func (s *scan) value(p *unstable.Parser, n *unstable.Node, t reflect.Type, path []string, at unstable.Position) {
	if n.Raw.Length > 0 {
		at = s.pos(n.Raw)
	}
	name := strings.Join(path, ".")
	s.valPos[name] = at
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if tv, ok := reflect.New(t).Interface().(textValue); ok {
		if n.Kind != unstable.String {
			s.add(at, fmt.Sprintf("%s is %s, not a string", name, kindName(n.Kind)), tv.expectedForm())
		} else if err := tv.UnmarshalText(n.Data); err != nil {
			s.add(at, fmt.Sprintf("%s: %v", name, err), tv.expectedForm())
		}
		return
	}
	want, hint := unstable.String, "put the value in double quotes"
	switch t.Kind() {
	case reflect.Int:
		want, hint = unstable.Integer, "write a whole number without quotes"
	case reflect.Bool:
		want, hint = unstable.Bool, "write true or false without quotes"
	case reflect.Slice:
		want, hint = unstable.Array, `write a list such as ["a", "b"]`
	case reflect.Struct, reflect.Map:
		want, hint = unstable.InlineTable, "write a [table] or an inline table { key = value }"
	}
	if n.Kind != want {
		s.add(at, fmt.Sprintf("%s is %s, not %s", name, kindName(n.Kind), kindName(want)), hint)
		return
	}
	switch want {
	case unstable.Array:
		i := 0
		for it := n.Children(); it.Next(); i++ {
			elem := append(append([]string(nil), path[:len(path)-1]...), fmt.Sprintf("%s[%d]", path[len(path)-1], i))
			s.value(p, it.Node(), t.Elem(), elem, at)
		}
	case unstable.InlineTable:
		for it := n.Children(); it.Next(); {
			s.keyValue(p, t, path, it.Node(), false)
		}
	}
}

func keyNodes(e *unstable.Node) []*unstable.Node {
	var keys []*unstable.Node
	for it := e.Key(); it.Next(); {
		keys = append(keys, it.Node())
	}
	return keys
}

// lineOf is the range of the line holding offset, without its newline.
func lineOf(data []byte, offset uint32) unstable.Range {
	start, end := int(offset), int(offset)
	for start > 0 && data[start-1] != '\n' {
		start--
	}
	for end < len(data) && data[end] != '\n' {
		end++
	}
	return unstable.Range{Offset: uint32(start), Length: uint32(end - start)}
}

// sanitize returns data with the refused expressions replaced by spaces.
// Newlines stay, so every position in the result is the same as in data.
func (s *scan) sanitize(data []byte) []byte {
	out := append([]byte(nil), data...)
	for _, r := range s.blank {
		for i := r.Offset; i < r.Offset+r.Length; i++ {
			if out[i] != '\n' && out[i] != '\r' {
				out[i] = ' '
			}
		}
	}
	return out
}

func isTable(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if _, text := reflect.New(t).Interface().(textValue); text {
		return false
	}
	return t.Kind() == reflect.Struct || t.Kind() == reflect.Map
}

// child is the type of key name in table type t (any key of a map).
func child(t reflect.Type, name string) (reflect.Type, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Map {
		return t.Elem(), true
	}
	for f := range t.Fields() {
		if f.Tag.Get("toml") == name {
			return f.Type, true
		}
	}
	return nil, false
}

// fieldNames lists the keys valid in table type t; a map takes any key.
func fieldNames(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	if t.Kind() == reflect.Struct {
		for f := range t.Fields() {
			if tag := f.Tag.Get("toml"); tag != "" && tag != "-" {
				names = append(names, tag)
			}
		}
	}
	return names
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a float"
	case unstable.Bool:
		return "a boolean"
	case unstable.Array:
		return "a list"
	case unstable.InlineTable:
		return "a table"
	default:
		return "a date or time"
	}
}
