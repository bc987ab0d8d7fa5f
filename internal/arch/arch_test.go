package arch

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/turnout/turnout/"

// TestImportsFollowTheArchitecture reads the package table of
// docs/ARCHITECTURE.md and fails when a package's code imports a turnout
// package that its row does not list or lists one it does not import, when
// a package has no row, or when a row names a package that does not exist:
// the document and the code cannot drift apart.
func TestImportsFollowTheArchitecture(t *testing.T) {
	root := filepath.Join("..", "..")
	allowed := documented(t, filepath.Join(root, "docs", "ARCHITECTURE.md"))
	for pkg := range allowed {
		if _, err := os.Stat(filepath.Join(root, pkg)); err != nil {
			t.Errorf("docs/ARCHITECTURE.md names package %s, which does not exist", pkg)
		}
	}
	used := map[string][]string{} // by row: what its packages import
	for pkg, imports := range actual(t, root) {
		row, ok := rowOf(allowed, pkg)
		if !ok {
			t.Errorf("package %s has no row in docs/ARCHITECTURE.md's package table", pkg)
			continue
		}
		for _, imp := range imports {
			if !slices.Contains(allowed[row], imp) {
				t.Errorf("%s imports %s, which its row in docs/ARCHITECTURE.md does not allow", pkg, imp)
			}
			used[row] = append(used[row], imp)
		}
	}
	for row, imports := range allowed {
		for _, imp := range imports {
			if !slices.Contains(used[row], imp) {
				t.Errorf("docs/ARCHITECTURE.md says %s imports %s, which it does not", row, imp)
			}
		}
	}
}

// documented returns each package of the table and the turnout packages
// it may import.
func documented(t *testing.T, path string) map[string][]string {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(text), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 4 {
			continue
		}
		pkg := strings.Trim(strings.TrimSpace(cells[0]), "`")
		var imports []string
		for _, imp := range strings.Split(cells[2], ",") {
			if imp = strings.TrimSpace(imp); imp != "" {
				imports = append(imports, imp)
			}
		}
		out[pkg] = imports
	}
	if len(out) == 0 {
		t.Fatalf("no package table found in %s", path)
	}
	return out
}

// rowOf finds the row of pkg: its own, or that of the nearest directory
// above it that has one (bench/load is bench's).
func rowOf(rows map[string][]string, pkg string) (string, bool) {
	for p := pkg; p != "."; p = filepath.Dir(p) {
		if _, ok := rows[p]; ok {
			return p, true
		}
	}
	return "", false
}

// actual returns, for each directory below root with Go code (tests left
// out), the turnout packages its code imports.
func actual(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		if _, ok := out[rel]; !ok {
			out[rel] = nil
		}
		for _, spec := range f.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			if name, ok := strings.CutPrefix(imp, module); ok && !slices.Contains(out[rel], name) {
				out[rel] = append(out[rel], name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
