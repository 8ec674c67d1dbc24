package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const importMapping = `event: Call Centre Contact
key: contact_id
timestamp: {column: started_at, format: "DD.MM.YYYY hh:mm:ss", timezone: Europe/Berlin}
identifiers: {phone: phone, email: email, crm_id: crm}
properties: {topic: topic}
channel: call-centre
`

// writeContacts writes a contact log of n rows.
func writeContacts(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "contact_id,started_at,phone,email,crm,topic")
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "C-%d,%02d.04.2024 %02d:%02d:%02d,+49 30 %07d,c%d@example.com,CRM-%d,topic-%d\n",
			i, 1+i%28, i%24, i%60, (i/60)%60, i, i, i, i%7)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func importCmd(s *server, args ...string) *exec.Cmd {
	cmd := exec.Command(binPath, append([]string{"import", "--addr", strings.TrimPrefix(s.url, "http://"), "--progress", "plain"}, args...)...)
	cmd.Env = append(cleanEnv(), "TANDEM_TOKEN="+adminToken)
	return cmd
}

// TestImportKilledServerResumes kills the server with SIGKILL half-way
// through an import, restarts it, runs the same command again and finds
// every row stored exactly once.
func TestImportKilledServerResumes(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, serverOpts{})
	if code, body := s.admin("POST", "/api/v1/sources", map[string]any{"name": "call-log", "kind": "import", "owner": "service",
		"purpose": "call-centre contacts", "dataCategories": []string{"contact"}, "monthlyCost": 0}); code != 201 {
		t.Fatalf("create source: %d %s", code, body)
	}
	const rows = 300_000
	data := filepath.Join(dir, "contacts.csv")
	writeContacts(t, data, rows)
	mapping := filepath.Join(dir, "mapping.yaml")
	if err := os.WriteFile(mapping, []byte(importMapping), 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(data)
	sum := sha256.Sum256(b)
	key := "sha256:" + hex.EncodeToString(sum[:])

	first := importCmd(s, "--source", "call-log", "--mapping", mapping, data)
	var out1, err1 syncBuffer
	first.Stdout, first.Stderr = &out1, &err1
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Wait() }()
	t.Cleanup(func() { _ = first.Process.Kill() })

	// The same spec finds the CLI's import: its key is the file's SHA-256.
	var id string
	var imported int64
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		code, body := s.admin("POST", "/api/v1/imports", map[string]any{"source": "call-log", "format": "csv", "mapping": importMapping, "key": key})
		var st struct {
			ID           string `json:"id"`
			Status       string `json:"status"`
			RowsImported int64  `json:"rowsImported"`
		}
		if code != 200 && code != 201 || json.Unmarshal(body, &st) != nil {
			t.Fatalf("find the import: %d %s", code, body)
		}
		id, imported = st.ID, st.RowsImported
		if st.Status == "completed" {
			t.Fatalf("the import finished before the kill: make the file larger\n%s", err1.String())
		}
		if imported >= rows/4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.kill()
	t.Logf("killed the server with %d of %d rows durable", imported, rows)
	select {
	case err := <-firstDone:
		if err == nil {
			t.Fatalf("the import command succeeded though its server was killed:\n%s", out1.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the import command did not notice the server died")
	}
	if !strings.Contains(err1.String(), "run the same command again to resume import "+id) {
		t.Errorf("the command's message does not say how to resume:\n%s", err1.String())
	}

	s = startServer(t, dir, serverOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	second := importCmd(s, "--source", "call-log", "--mapping", mapping, data)
	second = exec.CommandContext(ctx, second.Path, second.Args[1:]...)
	second.Env = append(cleanEnv(), "TANDEM_TOKEN="+adminToken)
	out, err := second.CombinedOutput()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "resuming import "+id) || !strings.Contains(string(out), "import "+id+" completed: 300,000 rows imported, 0 failed") {
		t.Fatalf("second run did not resume and complete:\n%s", out)
	}
	code, body := s.admin("GET", "/api/v1/imports/"+id, nil)
	var st struct {
		RowsImported, RowsSkipped, Attempts int64
	}
	if code != 200 || json.Unmarshal(body, &st) != nil || st.RowsImported != rows || st.RowsSkipped == 0 || st.Attempts != 2 {
		t.Fatalf("import after resume: %d %s", code, body)
	}

	// Every row exactly once in the event store.
	s.waitDrained(5 * time.Minute) // 300,000 events with identity; generous for a loaded machine
	seen := map[string]bool{}
	cursor := ""
	for {
		code, body := s.admin("GET", "/api/v1/events?limit=1000&event=Call+Centre+Contact&cursor="+cursor, nil)
		var page struct {
			Items []struct {
				Properties struct {
					ContactID string `json:"contact_id"`
				} `json:"properties"`
				Context struct {
					Traits struct {
						CrmID string `json:"crm_id"`
					} `json:"traits"`
				} `json:"context"`
			} `json:"items"`
			Next string `json:"next"`
		}
		if code != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("events: %d %.300s", code, body)
		}
		for _, e := range page.Items {
			k := e.Context.Traits.CrmID
			if seen[k] {
				t.Fatalf("row %s stored twice", k)
			}
			seen[k] = true
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if len(seen) != rows {
		t.Fatalf("%d rows stored, want %d", len(seen), rows)
	}
}

// TestImportUsageErrors checks that bad flags and mappings exit 2 naming
// what is wrong.
func TestImportUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("event: X\ntimestamp: {column: t, timezone: Mars/Base}\nidentifiers: {email: e}\n"), 0o644)
	data := filepath.Join(dir, "d.csv")
	os.WriteFile(data, []byte("t,e\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"import", data}, "--source"},
		{[]string{"import", "--source", "s", data}, "--mapping"},
		{[]string{"import", "--source", "s", "--mapping", bad, data}, "mapping.timestamp.timezone"},
		{[]string{"import", "--source", "s", "--format", "xml", data}, "--format"},
		{[]string{"import", "--source", "s", "--format", "ndjson", "--delimiter", "ab", data}, "--delimiter"},
		{[]string{"import", "--source", "s", "--format", "ndjson", "--data-dir", dir, data}, "--token"},
	} {
		code, _, stderr := runCLI(t, nil, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("tandem %s: exit %d, stderr %q; want 2 naming %s", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}

// TestImportMismatchSaysWhatToFix: a file that does not fit its mapping
// fails the same way on every run, so the command must say what to fix,
// not to run it again to resume; with the mapping fixed, it imports.
func TestImportMismatchSaysWhatToFix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir, serverOpts{})
	if code, body := s.admin("POST", "/api/v1/sources", map[string]any{"name": "call-log", "kind": "import", "owner": "service"}); code != 201 {
		t.Fatalf("create source: %d %s", code, body)
	}
	data := filepath.Join(dir, "contacts.csv")
	os.WriteFile(data, []byte("contact_id,started_at,phone,email,topic\nC-1,01.04.2024 10:00:00,+49 30 1234567,a@example.com,x\n"), 0o644)
	mapping := filepath.Join(dir, "mapping.yaml")
	os.WriteFile(mapping, []byte(importMapping), 0o644) // maps a column "crm" the file lacks
	for run := 1; run <= 2; run++ {
		var stderr bytes.Buffer
		cmd := importCmd(s, "--source", "call-log", "--mapping", mapping, data)
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("run %d: %v, want exit 2; stderr:\n%s", run, err, stderr.String())
		}
		if msg := stderr.String(); strings.Contains(msg, "run the same command again") || !strings.Contains(msg, "crm") ||
			!strings.Contains(msg, "fix the mapping or the file") {
			t.Errorf("run %d: stderr does not say what to fix:\n%s", run, msg)
		}
	}
	os.WriteFile(mapping, []byte(strings.Replace(importMapping, ", crm_id: crm", "", 1)), 0o644)
	out, err := importCmd(s, "--source", "call-log", "--mapping", mapping, data).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 rows imported") {
		t.Fatalf("with the mapping fixed: %v\n%s", err, out)
	}
}
