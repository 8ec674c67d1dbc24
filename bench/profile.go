package bench

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
)

// profileDir is --cpuprofile of `tandem bench ingest`: where the children
// write their CPU profiles; empty for none.
var profileDir string

// profileEnv names the file a child writes its CPU profile to.
const profileEnv = "TANDEM_BENCH_CPUPROFILE"

// ChildProfile starts a CPU profile when the bench that started this
// process asked for one (--cpuprofile) and returns the function that
// writes it out; `tandem serve` and `tandem bench sink` call it.
func ChildProfile(getenv func(string) string, stderr io.Writer) (stop func()) {
	path := getenv(profileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "cpu profile: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		fmt.Fprintf(stderr, "cpu profile: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
