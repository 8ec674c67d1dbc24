package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestUsageListsEveryCommand: the top-level usage names every command
// `run` knows and every `tandem bench` command, and each one it names runs
// (prints its own usage) rather than being unknown.
func TestUsageListsEveryCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"help"}, &out, &errb); code != 0 {
		t.Fatalf("help: exit %d", code)
	}
	usage := out.String()
	out.Reset()
	run([]string{"bench", "help"}, &out, &errb)
	benchCmds := regexp.MustCompile(`(?m)^  ([a-z]+) `).FindAllStringSubmatch(out.String(), -1)
	if len(benchCmds) < 4 {
		t.Fatalf("bench usage lists %d commands:\n%s", len(benchCmds), out.String())
	}
	listed := regexp.MustCompile(`tandem bench ([a-z|]+)`).FindStringSubmatch(usage)
	if listed == nil {
		t.Fatalf("usage has no bench line:\n%s", usage)
	}
	for _, c := range benchCmds {
		if !strings.Contains("|"+listed[1]+"|", "|"+c[1]+"|") {
			t.Errorf("usage's bench line %q omits %q", listed[0], c[1])
		}
	}
	for _, c := range regexp.MustCompile(`(?m)^  tandem ([a-z]+)`).FindAllStringSubmatch(usage, -1) {
		out.Reset()
		errb.Reset()
		run([]string{c[1], "--help"}, &out, &errb)
		if strings.Contains(errb.String(), "unknown command") || strings.Contains(errb.String(), "not available") {
			t.Errorf("usage lists %q, which is not a command: %s", c[1], errb.String())
		}
	}
}
