package auditcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"tandem/audit"
	"tandem/audit/audittest"
	"tandem/statestore"
	"tandem/statestore/postgres"
	"tandem/statestore/sqlite"
	"tandem/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

// dataDir makes a data directory whose state store holds a chain of n
// entries, then runs tamper (SQL) on it.
func dataDir(t *testing.T, n int, tamper ...string) string {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlite.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fill(t, db, n, tamper...)
	return dir
}

func fill(t *testing.T, db *statestore.DB, n int, tamper ...string) {
	t.Helper()
	ctx := context.Background()
	if err := db.Migrate(ctx, audit.Migrations()...); err != nil {
		t.Fatal(err)
	}
	audittest.Fill(t, audit.New(db), n)
	for _, q := range tamper {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper []string
		code   int
		want   string
	}{
		{"intact", nil, 0, "audit log intact: 12 entries, head 12, hash "},
		{"edited", []string{`UPDATE audit_entries SET subject = 'prf_other' WHERE seq = 7`}, 1, "BROKEN at entry 7 (edited)"},
		{"deleted", []string{`DELETE FROM audit_entries WHERE seq = 4`}, 1, "BROKEN at entry 4 (deleted): entries 4 to 4 are missing"},
		{"reordered", []string{
			`UPDATE audit_entries SET seq = -1 WHERE seq = 8`,
			`UPDATE audit_entries SET seq = 8 WHERE seq = 9`,
			`UPDATE audit_entries SET seq = 9 WHERE seq = -1`}, 1, "BROKEN at entry 8 (reordered): this entry was written as entry 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := dataDir(t, 12, tc.tamper...)
			code, out, errOut := run(t, nil, "verify", "--data-dir", dir, "--progress", "plain")
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, tc.code, tc.want)
			}
			if tc.code == 0 && !strings.Contains(errOut, "12 of 12 entries checked") {
				t.Errorf("no progress on stderr: %q", errOut)
			}
			// The same, as JSON, with the directory from the environment.
			code, out, _ = run(t, map[string]string{"TANDEM_DATA_DIR": dir}, "verify", "--json")
			var rep struct {
				Intact bool         `json:"intact"`
				Broken *audit.Break `json:"broken"`
			}
			if err := json.Unmarshal([]byte(out), &rep); err != nil || code != tc.code || rep.Intact != (tc.code == 0) {
				t.Fatalf("--json: exit %d, %q, %v", code, out, err)
			}
		})
	}
}

func TestVerifyPostgres(t *testing.T) {
	url := testserver.Postgres(t)
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fill(t, db, 5)
	if code, out, errOut := run(t, nil, "verify", "--state", url); code != 0 || !strings.Contains(out, "intact: 5 entries") {
		t.Fatalf("exit %d, %q, %q", code, out, errOut)
	}
	fill(t, db, 0, `DELETE FROM audit_entries WHERE seq = 5`)
	if code, out, errOut := run(t, map[string]string{"TANDEM_STATE": url}, "verify"); code != 1 || !strings.Contains(out, "BROKEN at entry 5 (deleted)") {
		t.Fatalf("exit %d, %q, %q", code, out, errOut)
	}
}

func TestUsage(t *testing.T) {
	noAudit := t.TempDir()
	db, err := sqlite.Open(filepath.Join(noAudit, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "want a subcommand"},
		{[]string{"check"}, 2, "want a subcommand"},
		{[]string{"verify", "--nope"}, 2, "nope"},
		{[]string{"verify", "extra"}, 2, "no arguments"},
		{[]string{"verify", "--progress", "loud"}, 2, "--progress"},
		{[]string{"verify", "--data-dir", filepath.Join(t.TempDir(), "missing")}, 2, "--data-dir: no state store"},
		{[]string{"verify", "--state", "mysql://u:hunter2@h/db"}, 2, "--state"},
		{[]string{"verify", "--data-dir", noAudit}, 1, "no audit log"},
	} {
		code, _, errOut := run(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
		if strings.Contains(errOut, "hunter2") {
			t.Errorf("%q: the password is shown: %q", tc.args, errOut)
		}
	}
	if code, out, _ := run(t, nil, "verify", "--help"); code != 0 || !strings.Contains(out, "reordered") {
		t.Errorf("--help: %d %q", code, out)
	}
}
