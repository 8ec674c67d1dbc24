package importcmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem/imports"
)

func TestUsageErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "d.csv")
	os.WriteFile(data, []byte("a\n"), 0o644)
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{data}, nil, "--source"},
		{[]string{"--source", "s"}, nil, "FILE"},
		{[]string{"--source", "s", "--max-errors", "-2", data}, nil, "--max-errors"},
		{[]string{"--source", "s", data}, map[string]string{"TANDEM_MAX_ERRORS": "many"}, "TANDEM_MAX_ERRORS"},
		{[]string{"--source", "s", "--progress", "fancy", data}, nil, "--progress"},
		{[]string{"--source", "s", "--encoding", "ebcdic", "--format", "ndjson", data}, nil, "--encoding"},
		{[]string{"--source", "s", data}, nil, "--mapping"},
		{[]string{"--source", "s", "--bogus", data}, nil, "bogus"},
	} {
		env = tc.env
		var out, errb bytes.Buffer
		code := Main(tc.args, getenv, strings.NewReader(""), &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 naming %s", tc.args, code, errb.String(), tc.want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	eta := 5.4
	st := imports.Status{ID: "imp_1", RowsImported: 519020, RowsFailed: 3, RowsPerSecond: 98412.7, BytesRead: 52, ETASeconds: &eta}
	bar := newProgress(nil, "bar", 100).line(st)
	if want := "[############............]  52%  519,023 rows  98,412 rows/s  3 errors  ETA 5s"; bar != want {
		t.Errorf("bar:\n got %q\nwant %q", bar, want)
	}
	plain := newProgress(nil, "plain", -1).line(imports.Status{ID: "imp_1", RowsImported: 12})
	if want := "import imp_1: 12 rows  0 rows/s  0 errors  ETA -"; plain != want {
		t.Errorf("plain:\n got %q\nwant %q", plain, want)
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := commas(n); got != want {
			t.Errorf("commas(%d) = %q", n, got)
		}
	}
}
