package layering

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../..", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The README's layout table names paths that exist, and every package of the module sits under one of them.
func TestReadmeLayoutMatchesTree(t *testing.T) {
	readme := readFile(t, "README.md")
	_, table, ok := strings.Cut(readme, "## Layout")
	if !ok {
		t.Fatal("README.md has no Layout section")
	}
	table, _, _ = strings.Cut(strings.TrimLeft(table, "\n"), "\n\n")
	var paths []string
	cell := regexp.MustCompile("`([a-z0-9_./-]+)`")
	for _, row := range strings.Split(table, "\n") {
		first, _, _ := strings.Cut(strings.TrimPrefix(row, "| "), " |")
		for _, m := range cell.FindAllStringSubmatch(first, -1) {
			p := strings.TrimSuffix(m[1], "/")
			if _, err := os.Stat(filepath.Join("../..", p)); err != nil {
				t.Errorf("README layout names %s, which does not exist", p)
			}
			paths = append(paths, p)
		}
	}
	for _, pkg := range deps(t, "./...") {
		rel, ok := strings.CutPrefix(pkg, module)
		if !ok {
			continue
		}
		covered := false
		for _, p := range paths {
			covered = covered || rel == p || strings.HasPrefix(rel, p+"/")
		}
		if !covered {
			t.Errorf("package %s is in no row of the README's layout table", rel)
		}
	}
}

// constValues returns the string values of the constants declared in a Go file whose type (or value
// expression) matches keep.
func constValues(t *testing.T, path string, keep func(spec *ast.ValueSpec, v ast.Expr) (string, bool)) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("../..", path), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for _, v := range vs.Values {
				if s, ok := keep(vs, v); ok {
					out = append(out, s)
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no constants found in %s", path)
	}
	return out
}

func literal(e ast.Expr) (string, bool) {
	b, ok := e.(*ast.BasicLit)
	if !ok || b.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(b.Value)
	return s, err == nil
}

// docs/design.md documents every lastcall.dev/ key of keys.go and every rendering of report.go: a key or a
// rendering added to the code without a word in the contract fails here.
func TestDesignNamesEveryKeyAndRendering(t *testing.T) {
	design := readFile(t, "docs/design.md")
	keys := constValues(t, "pkg/mutate/keys.go", func(_ *ast.ValueSpec, v ast.Expr) (string, bool) {
		b, ok := v.(*ast.BinaryExpr)
		if !ok {
			return "", false
		}
		if id, ok := b.X.(*ast.Ident); !ok || id.Name != "Prefix" {
			return "", false
		}
		return literal(b.Y)
	})
	for _, k := range keys {
		if !strings.Contains(design, "`"+k+"`") {
			t.Errorf("docs/design.md does not document the key lastcall.dev/%s (write it as `%s`)", k, k)
		}
	}
	renderings := constValues(t, "pkg/mutate/report.go", func(vs *ast.ValueSpec, v ast.Expr) (string, bool) {
		if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Rendering" {
			return "", false
		}
		return literal(v)
	})
	for _, r := range renderings {
		if !strings.Contains(design, "`"+r+"`") {
			t.Errorf("docs/design.md does not document the rendering %s", r)
		}
	}
}
