package apierror_test

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"tandem/apierror"
	"tandem/apierror/internal/errtable"
)

const root = ".." // the module root, from this package's directory

// TestGeneratedFilesUpToDate: the Go constants, docs/errors.md and the
// OpenAPI document's Error.code enum are what errors.json renders to.
func TestGeneratedFilesUpToDate(t *testing.T) {
	files, err := errtable.Files(root)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range files {
		got, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale (it differs from what apierror/errors.json renders to): run go generate ./apierror", path)
		}
	}
}

// TestTableMatchesFile: the table the server uses is errors.json.
func TestTableMatchesFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, errtable.TablePath))
	if err != nil {
		t.Fatal(err)
	}
	es, err := errtable.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	got := apierror.Table()
	if len(got) != len(es) {
		t.Fatalf("%d codes in apierror, %d in errors.json: run go generate ./apierror", len(got), len(es))
	}
	for i, e := range es {
		if got[i].Code != e.Code || got[i].Status != e.Status || apierror.Status(e.Code) != e.Status {
			t.Errorf("apierror has %s %d, errors.json %s %d", got[i].Code, got[i].Status, e.Code, e.Status)
		}
	}
	if s := apierror.Status("no_such_code"); s != 500 {
		t.Errorf("Status of an unknown code: %d", s)
	}
}

func TestParseRefusesBadTables(t *testing.T) {
	for _, tc := range []struct{ name, table, want string }{
		{"unsorted", `[{"code":"b","status":400,"description":"x"},{"code":"a","status":400,"description":"x"}]`, "sorted"},
		{"duplicate", `[{"code":"a","status":400,"description":"x"},{"code":"a","status":400,"description":"x"}]`, "twice"},
		{"bad status", `[{"code":"a","status":200,"description":"x"}]`, "not a 4xx"},
		{"no description", `[{"code":"a","status":400,"description":" "}]`, "no description"},
		{"bad code", `[{"code":"NotFound","status":404,"description":"x"}]`, "lower_snake_case"},
		{"unknown key", `[{"code":"a","status":400,"description":"x","http":1}]`, "unknown field"},
	} {
		_, err := errtable.Parse([]byte(tc.table))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestOpenAPISplice(t *testing.T) {
	es := []errtable.Entry{{Code: "a", Status: 400, Description: "x"}, {Code: "b", Status: 404, Description: "y"}}
	doc := []byte("{\n \"components\": {\n  \"schemas\": {\n   \"Error\": {\n    \"properties\": {\n     \"error\": {\n      \"properties\": {\n       \"code\": {\n        \"type\": \"string\"\n       },\n       \"z\": 1\n      }\n     }\n    }\n   }\n  }\n }\n}\n")
	got, err := errtable.OpenAPI(doc, es)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte("\"code\": {\n        \"enum\": [\n         \"a\",\n         \"b\"\n        ],\n        \"type\": \"string\"\n       },\n       \"z\": 1")) {
		t.Errorf("enum not added in place:\n%s", got)
	}
	again, err := errtable.OpenAPI(got, es[:1])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(again, []byte(`"b"`)) || !bytes.Contains(again, []byte("\"enum\": [\n         \"a\"\n        ]")) {
		t.Errorf("enum not replaced:\n%s", again)
	}
}

// A use is one place a code a client can see is given.
type use struct {
	at     token.Pos
	pos    string
	code   string // "" when forwarded from another error's Code field
	status int    // the literal status beside it, or 0
}

// TestEveryCodeInUseIsInTheTable scans every non-test Go file of the module
// for the codes given to clients — in apierror.Error and
// event.RequestError literals, and in calls of apierror.New, Of and Field —
// and checks each against errors.json: every code in use is in the table
// with the status used beside it, and every entry of the table is in use.
// A code must be a string literal, an apierror.Code* constant or a string
// constant of the same package, so that this scan can see it.
func TestEveryCodeInUseIsInTheTable(t *testing.T) {
	uses, problems := scanCodes(t, root)
	for _, p := range problems {
		t.Error(p)
	}
	status := map[string]int{}
	for _, e := range apierror.Table() {
		status[e.Code] = e.Status
	}
	used := map[string]bool{}
	forwarded := 0
	for _, u := range uses {
		if u.code == "" {
			forwarded++
			continue
		}
		used[u.code] = true
		st, ok := status[u.code]
		switch {
		case !ok:
			t.Errorf("%s: code %q is not in apierror/errors.json: add an entry (code, status, description) and run go generate ./apierror", u.pos, u.code)
		case u.status != 0 && u.status != st:
			t.Errorf("%s: code %q with status %d, but errors.json gives it %d", u.pos, u.code, u.status, st)
		}
	}
	for _, e := range apierror.Table() {
		if !used[e.Code] {
			t.Errorf("code %q of apierror/errors.json is given nowhere in the code: remove its entry, or use the code", e.Code)
		}
	}
	if len(uses)-forwarded < 40 {
		t.Errorf("the scan found only %d codes in use: is it still looking in the right places?", len(uses)-forwarded)
	}
	t.Logf("%d codes given, %d forwarded from another error's Code", len(uses)-forwarded, forwarded)
}

// TestScanFindsNewCodes: the scan sees a code another engineer adds in the
// ways the code base gives them, and says where.
func TestScanFindsNewCodes(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "collect"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "event"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "collect", "cors.go"), []byte(`package collect

import ae "tandem/apierror"

const codeQuota = "over_quota"

func deny(re *ae.Error, code string) []*ae.Error {
	return []*ae.Error{
		&ae.Error{Status: 403, Code: "origin_not_allowed", Message: "m"},
		{Status: 429, Code: codeQuota},
		ae.New(400, ae.CodeInvalidJSON, "m"),
		ae.Field("f", "bad_origin", "m"),
		ae.Of(ae.CodeNotFound, "m"),
		&ae.Error{Code: re.Code},
		&ae.Error{Code: code},
	}
}
`), 0o644))
	must(os.WriteFile(filepath.Join(dir, "collect", "cors_test.go"), []byte(`package collect

import "tandem/apierror"

var _ = apierror.Of("only_in_a_test", "m")
`), 0o644))
	must(os.WriteFile(filepath.Join(dir, "event", "e.go"), []byte(`package event

type RequestError struct{ Status int; Code string }

var _ = &RequestError{Status: 400, Code: "bad_event"}
`), 0o644))
	uses, problems := scanCodes(t, dir)
	var got []string
	for _, u := range uses {
		got = append(got, fmt.Sprintf("%s %s %d", u.pos, u.code, u.status))
	}
	want := []string{
		"collect/cors.go:9 origin_not_allowed 403",
		"collect/cors.go:10 over_quota 429",
		"collect/cors.go:11 invalid_json 400",
		"collect/cors.go:12 bad_origin 0",
		"collect/cors.go:13 not_found 0",
		"collect/cors.go:14  0",
		"event/e.go:5 bad_event 400",
	}
	if !slices.Equal(got, want) {
		t.Errorf("uses:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "collect/cors.go:15") {
		t.Errorf("problems %q, want one for the code passed in a variable (collect/cors.go:15)", problems)
	}
}

// scanCodes finds the codes given to clients in the non-test Go files under
// dir; problems are the places where it cannot tell the code.
func scanCodes(t *testing.T, dir string) (uses []use, problems []string) {
	t.Helper()
	consts := map[string]string{} // apierror's Code* constants by name
	for _, e := range apierror.Table() {
		consts[errtable.ConstName(e.Code)] = e.Code
	}
	fset := token.NewFileSet()
	byDir := map[string][]*ast.File{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != dir && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		byDir[filepath.Dir(path)] = append(byDir[filepath.Dir(path)], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dirs := make([]string, 0, len(byDir))
	for d := range byDir {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	for _, d := range dirs {
		rel, _ := filepath.Rel(dir, d)
		rel = filepath.ToSlash(rel)
		// The package's own string constants, for codes named by one.
		local := map[string]string{}
		for _, f := range byDir[d] {
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							if s, ok := stringLit(vs.Values[i]); ok {
								local[n.Name] = s
							}
						}
					}
				}
			}
		}
		for _, f := range byDir[d] {
			s := &scanner{fset: fset, dir: dir, consts: consts, local: local,
				inAPIError: rel == "apierror", inEvent: rel == "event"}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				name := p[strings.LastIndex(p, "/")+1:]
				if imp.Name != nil {
					name = imp.Name.Name
				}
				switch p {
				case "tandem/apierror":
					s.apierror = name
				case "tandem/event":
					s.event = name
				}
			}
			ast.Inspect(f, s.visit)
			slices.SortStableFunc(s.uses, func(a, b use) int { return int(a.at - b.at) })
			uses = append(uses, s.uses...)
			problems = append(problems, s.problems...)
		}
	}
	return uses, problems
}

type scanner struct {
	fset                *token.FileSet
	dir                 string
	consts, local       map[string]string
	inAPIError, inEvent bool
	apierror, event     string // local names of the imports, "" if not imported
	uses                []use
	problems            []string
}

func (s *scanner) pos(n ast.Node) string {
	p := s.fset.Position(n.Pos())
	rel, _ := filepath.Rel(s.dir, p.Filename)
	return filepath.ToSlash(rel) + ":" + strconv.Itoa(p.Line)
}

// is reports whether e names the type or func name of package pkg (its
// local import name, or "" for the package being scanned when local).
func is(e ast.Expr, pkg string, local bool, name string) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return local && e.Name == name
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		return ok && pkg != "" && x.Name == pkg && e.Sel.Name == name
	}
	return false
}

func (s *scanner) visit(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.CompositeLit:
		typ := n.Type
		if u, ok := typ.(*ast.UnaryExpr); ok {
			typ = u.X
		}
		if typ == nil || !(is(typ, s.apierror, s.inAPIError, "Error") || is(typ, s.event, s.inEvent, "RequestError")) {
			// An element of a []*apierror.Error literal may omit its type.
			if at, ok := typ.(*ast.ArrayType); ok {
				elt := at.Elt
				if st, ok := elt.(*ast.StarExpr); ok {
					elt = st.X
				}
				if is(elt, s.apierror, s.inAPIError, "Error") || is(elt, s.event, s.inEvent, "RequestError") {
					for _, el := range n.Elts {
						if cl, ok := el.(*ast.CompositeLit); ok && cl.Type == nil {
							s.literal(cl)
						}
						if u, ok := el.(*ast.UnaryExpr); ok {
							if cl, ok := u.X.(*ast.CompositeLit); ok && cl.Type == nil {
								s.literal(cl)
							}
						}
					}
				}
			}
			return true
		}
		s.literal(n)
	case *ast.CallExpr:
		for name, arg := range map[string]int{"New": 1, "Of": 0, "Field": 1} {
			if is(n.Fun, s.apierror, s.inAPIError, name) && len(n.Args) > arg {
				status := 0
				if name == "New" {
					status = intLit(n.Args[0])
				}
				s.code(n, n.Args[arg], status)
			}
		}
	}
	return true
}

// literal records the code of an Error or RequestError literal.
func (s *scanner) literal(n *ast.CompositeLit) {
	var code ast.Expr
	status := 0
	for _, el := range n.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			s.problems = append(s.problems, s.pos(n)+": an error literal without field names: name them, so the scan can see the code")
			return
		}
		switch k, _ := kv.Key.(*ast.Ident); {
		case k == nil:
		case k.Name == "Code":
			code = kv.Value
		case k.Name == "Status":
			status = intLit(kv.Value)
		}
	}
	if code == nil {
		return // filled in elsewhere, e.g. a zero value to decode into
	}
	s.code(n, code, status)
}

func (s *scanner) code(n ast.Node, e ast.Expr, status int) {
	if c, ok := stringLit(e); ok {
		s.uses = append(s.uses, use{at: n.Pos(), pos: s.pos(n), code: c, status: status})
		return
	}
	switch e := e.(type) {
	case *ast.Ident:
		if c, ok := s.local[e.Name]; ok {
			s.uses = append(s.uses, use{at: n.Pos(), pos: s.pos(n), code: c, status: status})
			return
		}
		if c, ok := s.consts[e.Name]; ok && s.inAPIError {
			s.uses = append(s.uses, use{at: n.Pos(), pos: s.pos(n), code: c, status: status})
			return
		}
		if s.inAPIError {
			return // a constructor passing its argument on; its calls are scanned
		}
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && x.Name == s.apierror {
			if c, ok := s.consts[e.Sel.Name]; ok {
				s.uses = append(s.uses, use{at: n.Pos(), pos: s.pos(n), code: c, status: status})
				return
			}
		}
		if e.Sel.Name == "Code" {
			// Forwarded from another error (e.g. an event.RequestError,
			// whose own literals are scanned).
			s.uses = append(s.uses, use{at: n.Pos(), pos: s.pos(n), status: status})
			return
		}
	}
	s.problems = append(s.problems, s.pos(n)+": cannot tell which code this gives a client: use a string literal, an apierror.Code* constant or a string constant of the package")
}

func stringLit(e ast.Expr) (string, bool) {
	if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
		s, err := strconv.Unquote(b.Value)
		return s, err == nil
	}
	return "", false
}

func intLit(e ast.Expr) int {
	if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.INT {
		n, _ := strconv.Atoi(b.Value)
		return n
	}
	return 0
}
