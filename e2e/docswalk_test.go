//go:build unix

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDocsWalk runs the shell commands of README.md and docs/*.md as
// written, the way a newcomer would, and fails when one does not work.
//
// What runs: every fenced block tagged sh, bash or shell. Untagged blocks
// (output, config files, usage synopses) never run. A block is skipped
// when the line before it (blank lines aside) is
//
//	<!-- docs-walk: skip (why it cannot run here) -->
//
// and single commands of it (1-based) with
//
//	<!-- docs-walk: skip 2 (why) -->
//
// A reason is required. Keep skips few: a command a reader cannot run is
// a doc to fix.
//
// How: each doc gets a fresh working directory holding a copy of the
// repository's examples/ and the binary as ./tandem (the binary is also on
// PATH as tandem), so relative paths and a fresh ./tandem-data behave as
// in a clone. Commands run one by one with bash in that directory; a
// command continues over lines ending in "\" and over an unclosed single
// quote. Substitutions, the only changes made to a command:
//
//   - 127.0.0.1:8080 becomes the test's free loopback address, and
//     TANDEM_ADDR is set to it (so `tandem serve` and `tandem import`
//     without --addr use it too);
//   - `go build -o tandem ./cmd/tandem` and `go install ./cmd/tandem`
//     become `true` (the test built the binary once), and
//     `go run ./cmd/tandem` becomes `tandem`.
//
// Shell variables a command sets (TOKEN=…) are kept for the doc's later
// commands, as in the reader's shell.
//
// A command that runs `tandem serve` starts in the background (a previous
// one is stopped first) and the walk waits for /readyz. A doc that never
// starts a server gets one before its first command, as the README has
// the reader start one. Documented output is the "# …" lines right after
// a command: each must match a line of the command's stdout, in order,
// where "…" matches any text. A command whose output does not match yet is
// run again for up to 10 s (the pipeline stores an event a moment after
// collection acknowledged it), unless it sends data (curl -d, -F, -X). A command that exits non-zero or whose
// output never matches fails the walk of its doc with the file, the line,
// the command and its output.
func TestDocsWalk(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the docs' commands need %s, which is not installed here (on Debian: apt-get install %s)", tool, tool)
		}
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	slices.Sort(docs)
	docs = append([]string{filepath.Join(root, "README.md")}, docs...)
	for _, path := range docs {
		rel, _ := filepath.Rel(root, path)
		blocks, err := parseDoc(path, rel)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if !slices.ContainsFunc(blocks, func(b docBlock) bool { return len(b.runnable()) > 0 }) {
			continue
		}
		t.Run(rel, func(t *testing.T) {
			t.Parallel()
			walkDoc(t, root, blocks)
		})
	}
}

// docBlock is a fenced shell block of a doc.
type docBlock struct {
	file string
	line int    // of the opening fence
	skip string // the whole block's skip reason
	cmds []docCommand
}

// runnable returns the commands the walk runs.
func (b docBlock) runnable() []docCommand {
	if b.skip != "" {
		return nil
	}
	var out []docCommand
	for _, c := range b.cmds {
		if c.skip == "" {
			out = append(out, c)
		}
	}
	return out
}

type docCommand struct {
	file string
	line int
	text string
	want []string // documented output lines
	skip string
}

func (c docCommand) where() string { return fmt.Sprintf("%s:%d", c.file, c.line) }

var (
	fenceRE  = regexp.MustCompile("^\\s*(```+)\\s*([A-Za-z]*)")
	markerRE = regexp.MustCompile(`^\s*<!--\s*docs-walk:\s*skip\b\s*([0-9, ]*)\s*(?:\((.*)\))?\s*-->\s*$`)
	anyMark  = regexp.MustCompile(`docs-walk`)
)

// parseDoc returns the shell blocks of a markdown file.
func parseDoc(path, rel string) ([]docBlock, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	var blocks []docBlock
	var marker string // the last non-blank line before a fence
	var markerLine int
	for i := 0; i < len(lines); i++ {
		m := fenceRE.FindStringSubmatch(lines[i])
		if m == nil {
			if strings.TrimSpace(lines[i]) != "" {
				marker, markerLine = lines[i], i+1
			}
			continue
		}
		start := i
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), m[1]); i++ {
			body = append(body, lines[i])
		}
		lang := strings.ToLower(m[2])
		if lang != "sh" && lang != "bash" && lang != "shell" {
			marker = ""
			continue
		}
		blk := docBlock{file: rel, line: start + 1, cmds: splitCommands(rel, start+2, body)}
		if anyMark.MatchString(marker) {
			mm := markerRE.FindStringSubmatch(marker)
			if mm == nil || strings.TrimSpace(mm[2]) == "" {
				return nil, fmt.Errorf("%s:%d: docs-walk marker %q: want <!-- docs-walk: skip [N,…] (reason) -->", rel, markerLine, strings.TrimSpace(marker))
			}
			if nums := strings.TrimSpace(mm[1]); nums == "" {
				blk.skip = mm[2]
			} else {
				for _, n := range strings.Split(nums, ",") {
					k, err := strconv.Atoi(strings.TrimSpace(n))
					if err != nil || k < 1 || k > len(blk.cmds) {
						return nil, fmt.Errorf("%s:%d: docs-walk marker skips command %q; the block has %d", rel, markerLine, n, len(blk.cmds))
					}
					blk.cmds[k-1].skip = mm[2]
				}
			}
		}
		marker = ""
		blocks = append(blocks, blk)
	}
	return blocks, nil
}

// splitCommands splits a block's lines (the first is line first of file)
// into commands and their documented output.
func splitCommands(file string, first int, body []string) []docCommand {
	var cmds []docCommand
	var cur *docCommand
	open := false // inside a command: a continuation or an unclosed quote
	for i, l := range body {
		t := strings.TrimSpace(l)
		switch {
		case open:
			cur.text += "\n" + l
		case t == "":
			cur = nil
			continue
		case strings.HasPrefix(t, "#"):
			if cur != nil {
				cur.want = append(cur.want, strings.TrimSpace(strings.TrimPrefix(t, "#")))
			}
			continue
		default:
			cmds = append(cmds, docCommand{file: file, line: first + i, text: l})
			cur = &cmds[len(cmds)-1]
		}
		open = strings.HasSuffix(t, "\\") || unclosedQuote(cur.text)
	}
	return cmds
}

// unclosedQuote reports whether s ends inside a '…' or "…" string.
func unclosedQuote(s string) bool {
	var single, double bool
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case single:
			single = c != '\''
		case c == '\\':
			i++ // the next character is literal (a line break continues the line)
		case c == '"':
			double = !double
		case c == '\'' && !double:
			single = true
		}
	}
	return single || double
}

var serveRE = regexp.MustCompile(`(^|[\s;&|(])(\./)?tandem\s+serve\b`)

// walk is the state of one doc's walk.
type walk struct {
	t      *testing.T
	dir    string
	state  string // file of the variables commands set
	addr   string
	env    []string
	server *exec.Cmd
	srvOut *syncBuffer
	srvEnd chan struct{}
}

func walkDoc(t *testing.T, root string, blocks []docBlock) {
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "examples"), os.DirFS(filepath.Join(root, "examples"))); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binPath, filepath.Join(dir, "tandem")); err != nil {
		t.Fatal(err)
	}
	w := &walk{t: t, dir: dir, addr: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	w.env = append(cleanEnv(), "TANDEM_ADDR="+w.addr, "PATH="+filepath.Dir(binPath)+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Cleanup(w.stopServer)
	// The variables of a fresh shell, which are not the doc's.
	state := t.TempDir()
	w.state = filepath.Join(state, "vars")
	base := exec.Command("bash", "-c", "compgen -v")
	base.Env = w.env
	vars, err := base.Output()
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	if err := os.WriteFile(filepath.Join(state, "base"), vars, 0o644); err != nil {
		t.Fatal(err)
	}
	w.env = append(w.env, "DW_STATE="+w.state, "DW_BASE="+filepath.Join(state, "base"))

	startsOwn := false
	for _, b := range blocks {
		for _, c := range b.runnable() {
			startsOwn = startsOwn || serveRE.MatchString(w.substitute(c.text))
		}
	}
	if !startsOwn {
		w.startServer(docCommand{file: blocks[0].file, line: 0, text: "tandem serve"})
	}
	for _, b := range blocks {
		for _, c := range b.runnable() {
			if serveRE.MatchString(w.substitute(c.text)) {
				w.startServer(c)
				continue
			}
			w.run(c)
		}
	}
}

func (w *walk) substitute(s string) string {
	s = strings.ReplaceAll(s, "127.0.0.1:8080", w.addr)
	s = strings.ReplaceAll(s, "go build -o tandem ./cmd/tandem", "true")
	s = strings.ReplaceAll(s, "go install ./cmd/tandem", "true")
	return strings.ReplaceAll(s, "go run ./cmd/tandem", "tandem")
}

// keepVars runs a command with the variables earlier ones set and saves
// those it sets.
const keepVars = `[ -f "$DW_STATE" ] && . "$DW_STATE"
%s
__dw_rc=$?
declare -p $(compgen -v | grep -vxF -f "$DW_BASE" | grep -vxE '__dw_rc|BASH_.*|_|PIPESTATUS|FUNCNAME') > "$DW_STATE.new" 2>/dev/null
mv "$DW_STATE.new" "$DW_STATE"
exit $__dw_rc
`

func (w *walk) bash(ctx context.Context, text string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", "-c", fmt.Sprintf(keepVars, text))
	cmd.Dir = w.dir
	cmd.Env = w.env
	// Its own process group, so that stopping it stops what it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// startServer runs a `tandem serve` command in the background and waits
// until the node is ready.
func (w *walk) startServer(c docCommand) {
	w.t.Helper()
	w.stopServer()
	cmd := w.bash(context.Background(), w.substitute(c.text))
	w.srvOut = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = w.srvOut, w.srvOut
	if err := cmd.Start(); err != nil {
		w.t.Fatalf("%s: start %q: %v", c.where(), c.text, err)
	}
	w.server, w.srvEnd = cmd, make(chan struct{})
	end := w.srvEnd
	go func() { cmd.Wait(); close(end) }()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-end:
			w.t.Fatalf("%s: `%s` exited before the node was ready (%v); its output:\n%s", c.where(), c.text, cmd.ProcessState, tail(w.srvOut.String(), 30))
		default:
		}
		if resp, err := hc.Get("http://" + w.addr + "/readyz"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: `%s`: /readyz not 200 within 60 s; its output:\n%s", c.where(), c.text, tail(w.srvOut.String(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopServer stops a running server: SIGTERM to its process group, SIGKILL
// after 10 s.
func (w *walk) stopServer() {
	if w.server == nil {
		return
	}
	pid := w.server.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-w.srvEnd:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-w.srvEnd
	}
	w.server = nil
}

// sendsData matches commands that change something (a curl that sends a
// body or a method): they run once, never again to wait for output.
var sendsData = regexp.MustCompile(`\s(-d|--data\S*|-F|--form|-T|-X|--request)\s`)

// run runs one command and checks its exit code and documented output.
func (w *walk) run(c docCommand) {
	w.t.Helper()
	text := w.substitute(c.text)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var stdout, stderr bytes.Buffer
		cmd := w.bash(ctx, text)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		if err != nil {
			var ee *exec.ExitError
			how := err.Error()
			if errors.As(err, &ee) {
				how = "exited " + strconv.Itoa(ee.ExitCode())
			}
			w.t.Fatalf("%s: command %s\n%s\nstdout:\n%s\nstderr:\n%s%s", c.where(), how, indent(c.text), indent(stdout.String()), indent(stderr.String()), w.serverTail())
		}
		missing := matchOutput(c.want, stdout.String())
		if missing == "" {
			return
		}
		if time.Now().After(deadline) || sendsData.MatchString(text) {
			w.t.Fatalf("%s: the output of\n%s\ndoes not match the documented\n%s\nno line matches %q (… matches any text)\nstdout:\n%s\nstderr:\n%s",
				c.where(), indent(c.text), indent("# "+strings.Join(c.want, "\n# ")), missing, indent(stdout.String()), indent(stderr.String()))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (w *walk) serverTail() string {
	if w.srvOut == nil {
		return ""
	}
	return "\nthe server's last lines:\n" + indent(tail(w.srvOut.String(), 10))
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (nothing)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// matchOutput checks that each wanted line matches a line of out, in
// order, and returns the first that does not ("" when all do).
func matchOutput(want []string, out string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	i := 0
	for i < len(want) && sc.Scan() {
		if globMatch(want[i], strings.TrimSpace(sc.Text())) {
			i++
		}
	}
	if i < len(want) {
		return want[i]
	}
	return ""
}

// globMatch reports whether s matches pattern, where "…" matches any text.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "…")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		k := strings.Index(s, p)
		if k < 0 {
			return false
		}
		s = s[k+len(p):]
	}
	return strings.HasSuffix(s, last)
}

// TestDocsWalkParser pins the walk's reading of a doc: what runs, what is
// skipped and what output is expected.
func TestDocsWalkParser(t *testing.T) {
	doc := "# T\n\n```sh\ncurl -d '{\"a\":\n 1}' \\\n  http://x\n# {\"success\":true}\n\n./tandem version   # a comment\n```\n\n" +
		"<!-- docs-walk: skip (needs a NATS cluster) -->\n```sh\ntandem serve --log nats://n:4222\n```\n\n" +
		"<!-- docs-walk: skip 2 (the whole suite) -->\n\n```bash\ntandem serve\n./scripts/test\n```\n\n```\nnot run\n```\n"
	path := filepath.Join(t.TempDir(), "doc.md")
	os.WriteFile(path, []byte(doc), 0o644)
	blocks, err := parseDoc(path, "doc.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 3 {
		t.Fatalf("%d blocks: %+v", len(blocks), blocks)
	}
	c := blocks[0].runnable()
	if len(c) != 2 || c[0].line != 4 || !strings.HasSuffix(c[0].text, "http://x") || len(c[0].want) != 1 || c[0].want[0] != `{"success":true}` ||
		c[1].line != 9 || len(c[1].want) != 0 {
		t.Errorf("first block: %+v", c)
	}
	if blocks[1].skip != "needs a NATS cluster" || len(blocks[1].runnable()) != 0 {
		t.Errorf("skipped block: %+v", blocks[1])
	}
	if r := blocks[2].runnable(); len(r) != 1 || r[0].text != "tandem serve" || blocks[2].cmds[1].skip != "the whole suite" {
		t.Errorf("partly skipped block: %+v", blocks[2])
	}
	for _, tc := range []struct {
		s    string
		open bool
	}{
		{`curl -d '{"a":`, true},
		{`curl -d '{"a":1}'`, false},
		{`X=$(curl -s x | sed 's/.*"token":"\([^"]*\)".*/\1/')`, false},
		{`curl -d "{\"ids\":[\"$Q\"]}" x`, false},
		{`echo "it's"`, false},
		{`echo "a`, true},
	} {
		if got := unclosedQuote(tc.s); got != tc.open {
			t.Errorf("unclosedQuote(%s) = %v", tc.s, got)
		}
	}
	os.WriteFile(path, []byte("<!-- docs-walk: skip -->\n```sh\nx\n```\n"), 0o644)
	if _, err := parseDoc(path, "doc.md"); err == nil || !strings.Contains(err.Error(), "doc.md:1") {
		t.Errorf("a skip without a reason: %v", err)
	}
	for _, tc := range []struct {
		pattern, s string
		ok         bool
	}{
		{`{"success":true}`, `{"success":true}`, true},
		{`{"success":true}`, `{"success":false}`, false},
		{`{"items":[{"event":"Signed Up","messageId":"…","timestamp":"…",…}]}`, `{"items":[{"event":"Signed Up","messageId":"m1","sourceId":"s","timestamp":"t","type":"track"}]}`, true},
		{`{"items":[{"event":"Signed Up",…}]}`, `{"items":[]}`, false},
		{`import imp_… completed: 5 rows imported, 0 failed…`, `import imp_1 completed: 5 rows imported, 0 failed; 9 rows/s`, true},
	} {
		if got := globMatch(tc.pattern, tc.s); got != tc.ok {
			t.Errorf("globMatch(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}
