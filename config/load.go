package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Load reads the config file at path and parses it with Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file %s: %w (pass --config with the path of a readable TOML file)", path, err)
	}
	return Parse(data, path)
}

// Parse decodes and checks a config file's bytes; path names the file in
// errors and resolves a relative maintenance.page. On success every default
// is filled in, each pool's Health is its complete merged settings, tokens
// read from the environment are resolved, and Hash is set. Otherwise the
// error is an Errors holding every problem found, each with its position.
func Parse(data []byte, path string) (*Config, error) {
	file := path
	if file == "" {
		file = "config"
	}
	// The walk finds unknown keys, wrong types and bad values, and blanks
	// them out; go-toml then checks what is left for syntax errors and
	// duplicate keys. In that order, because go-toml's duplicate check
	// grows with the square of the keys in a table, which a file of
	// thousands of unknown keys would make crawl.
	s := scanDocument(data, file)
	clean := s.sanitize(data)
	if err := toml.Unmarshal(clean, new(map[string]any)); err != nil {
		s.errs = append(s.errs, decodeErrors(file, err)...)
		s.errs.sort()
		return nil, s.errs
	}
	if s.exprs == 0 {
		return nil, Errors{{File: file, Line: 1, Col: 1, Msg: "the config file is empty (or only comments)",
			Hint: `turnout needs two pools at least: write [pools.A] with servers = ["127.0.0.1:9001"] and [pools.B] with servers = ["127.0.0.1:9101"]; every other key has a default`}}
	}
	cfg := Default()
	cfg.Listen = nil // a listed value replaces the default, it does not add to it
	dec := toml.NewDecoder(bytes.NewReader(clean))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		// The walk should have caught and blanked all of these; go-toml's own
		// positioned error is the safety net.
		s.errs = append(s.errs, decodeErrors(file, err)...)
		s.errs.sort()
		return nil, s.errs
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = Default().Listen
	}
	sum := sha256.Sum256(data)
	cfg.Path, cfg.Hash = path, hex.EncodeToString(sum[:])[:12]
	s.check(cfg)
	if len(s.errs) > 0 {
		s.errs.sort()
		return nil, s.errs
	}
	return cfg, nil
}

// at is where path is in the file: its value, else its key, else the nearest
// parent's; the zero Position when the file does not mention it.
func (s *scan) at(path string) unstable.Position {
	for {
		if pos, ok := s.valPos[path]; ok {
			return pos
		}
		if pos, ok := s.keyPos[path]; ok {
			return pos
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			return unstable.Position{}
		}
		path = path[:i]
	}
}

// errorAt records a problem at path unless the walk already refused that
// value (its error is reported once, by the walk).
func (s *scan) errorAt(path, msg, hint string) {
	if s.bad[path] {
		return
	}
	s.add(s.at(path), msg, hint)
}
