package jetstream_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventlog"
	"tandem/eventlog/jetstream"
)

// crashDirEnv tells the test binary, re-executed by TestCrashDurability, to
// run TestCrashChild on the log in that directory.
const crashDirEnv = "TANDEM_EVENTLOG_CRASH_DIR"

const crashEventsPerChunk = 5

// crashRecord is the content of the i-th record the child appends directly.
func crashRecord(i int) []byte {
	head := fmt.Sprintf("crash-record-%d:", i)
	return append([]byte(head), bytes.Repeat([]byte{byte('a' + i%26)}, 100+(i*37)%3000)...)
}

func crashChunk(i int) []byte {
	evs := make([]event.Event, crashEventsPerChunk)
	for k := range evs {
		id := fmt.Sprintf("c%d-%d", i, k)
		evs[k] = event.Event{MessageID: id, Type: "track", Raw: []byte(`{"messageId":"` + id + `"}`)}
	}
	return event.AppendEntries(nil, "crash", evs, nil)
}

// TestCrashChild is the process TestCrashDurability kills. It appends to the
// embedded log until killed, directly and through a Committer, and prints a
// line for each append that returned nil: "L index seq" or "C index".
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrashDurability")
	}
	l, err := jetstream.OpenEmbedded(jetstream.EmbeddedOptions{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	var mu sync.Mutex
	say := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		// One write per line, done before the next append starts.
		if _, err := os.Stdout.WriteString(line); err != nil {
			os.Exit(3)
		}
	}
	// The parent kills this process long before; this only bounds an
	// orphan.
	deadline := time.Now().Add(20 * time.Second)
	var nextL, nextC atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := int(nextL.Add(1) - 1)
				seq, err := l.Append(context.Background(), crashRecord(i))
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(4)
				}
				say(fmt.Sprintf("L %d %d\n", i, seq))
			}
		})
	}
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := int(nextC.Add(1) - 1)
				if err := cm.Append(context.Background(), crashChunk(i)); err != nil {
					fmt.Fprintln(os.Stderr, "committer append:", err)
					os.Exit(4)
				}
				say(fmt.Sprintf("C %d\n", i))
			}
		})
	}
	wg.Wait()
	os.Exit(5) // no Close: as abrupt as a kill
}

// TestCrashDurability runs TestCrashChild in a child process, SIGKILLs it
// while it appends, reopens the log and checks that every append the child
// saw succeed is there with the right content.
func TestCrashDurability(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		r := bufio.NewReader(out)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return // a line cut short by the kill does not count
			}
			lines <- line
		}
	}()

	direct := make(map[uint64]int) // seq → record index
	chunks := make(map[int]bool)
	parse := func(line string) {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "L":
			i, err1 := strconv.Atoi(f[1])
			seq, err2 := strconv.ParseUint(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("child printed %q", line)
			}
			direct[seq] = i
		case len(f) == 2 && f[0] == "C":
			i, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("child printed %q", line)
			}
			chunks[i] = true
		}
	}

	// Kill the child about a second after its first acknowledged append.
	timeout := time.After(30 * time.Second)
	select {
	case line, ok := <-lines:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("child exited before appending anything: %s", stderr.String())
		}
		parse(line)
	case <-timeout:
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child appended nothing in 30s: %s", stderr.String())
	}
	kill := time.After(time.Second)
collect:
	for {
		select {
		case line := <-lines:
			parse(line)
		case <-kill:
			break collect
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	for line := range lines {
		parse(line)
	}
	werr := cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(werr, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v; stderr: %s", werr, stderr.String())
	}
	if len(direct) == 0 || len(chunks) == 0 {
		t.Fatalf("child acknowledged %d records and %d chunks before the kill; stderr: %s", len(direct), len(chunks), stderr.String())
	}

	l := openEmbedded(t, jetstream.EmbeddedOptions{Dir: dir})
	defer l.Close()
	ctx := t.Context()
	st, err := l.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Consumer(ctx, "check")
	if err != nil {
		t.Fatal(err)
	}
	found := make(map[uint64][]byte, st.Msgs)
	for uint64(len(found)) < st.Msgs {
		msgs, err := c.Fetch(ctx, 1000, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			t.Fatalf("read %d of %d records", len(found), st.Msgs)
		}
		for _, m := range msgs {
			found[m.Seq] = m.Data
		}
		if err := c.Ack(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	events := make(map[string]int)
	for seq, data := range found {
		if bytes.HasPrefix(data, event.RecordHeader) {
			evs, _, err := event.DecodeRecord(data)
			if err != nil {
				t.Fatalf("record %d: %v", seq, err)
			}
			for _, e := range evs {
				events[e.MessageID]++
			}
			continue
		}
		var i int
		if _, err := fmt.Sscanf(string(data), "crash-record-%d:", &i); err != nil || !bytes.Equal(data, crashRecord(i)) {
			t.Fatalf("record %d is neither a committed record nor an intact direct one: %.40q", seq, data)
		}
	}
	for seq, i := range direct {
		data, ok := found[seq]
		if !ok {
			t.Fatalf("acknowledged record %d (seq %d) lost", i, seq)
		}
		if !bytes.Equal(data, crashRecord(i)) {
			t.Fatalf("acknowledged record %d (seq %d) has the wrong content", i, seq)
		}
	}
	for i := range chunks {
		for k := range crashEventsPerChunk {
			if n := events[fmt.Sprintf("c%d-%d", i, k)]; n != 1 {
				t.Fatalf("acknowledged chunk %d: event %d found %d times", i, k, n)
			}
		}
	}
	t.Logf("killed after %d acknowledged records and %d acknowledged chunks; %d records on disk, all acknowledged ones intact",
		len(direct), len(chunks), st.Msgs)
}
