package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is a process the bench started: a tandem server or a sink.
type child struct {
	name    string
	cmd     *exec.Cmd
	log     *os.File
	logPath string
	base    string // http://host:port
	done    chan struct{}
	waitErr error
}

// freeAddr returns a 127.0.0.1 address with a port nobody listens on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// childEnv is the bench's environment without TANDEM_* variables, which
// would otherwise reconfigure the child (an external log, a config file…),
// plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TANDEM_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// startChild runs this executable with args, its output going to logPath.
// The caller must call kill (or stop) on every path.
func startChild(name, addr, logPath string, env []string, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	return startChildExe(exe, name, addr, logPath, env, args...)
}

// startChildExe is startChild with another executable.
func startChildExe(exe, name, addr, logPath string, env []string, args ...string) (*child, error) {
	if profileDir != "" {
		env = append(env[:len(env):len(env)], profileEnv+"="+filepath.Join(profileDir, strings.ReplaceAll(name, " ", "-")+".pprof"))
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	cmd.Stdout = logf
	cmd.Stderr = logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logf, logPath: logPath, base: "http://" + addr, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// cpu is the CPU time the child has used so far.
func (c *child) cpu() (time.Duration, error) { return procCPU(c.cmd.Process.Pid) }

// kill ends the child at once if it still runs, and waits for it. It is
// safe to call at any time, more than once.
func (c *child) kill() {
	if c == nil {
		return
	}
	if !c.exited() {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-c.done
}

// stop sends SIGTERM and waits up to timeout for the child to exit, then
// kills it. It describes how the child ended: "exit 0" is a clean stop.
func (c *child) stop(timeout time.Duration) string {
	if !c.exited() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.kill()
		return fmt.Sprintf("killed: no exit %s after SIGTERM", timeout)
	}
	return c.exitDesc()
}

func (c *child) exitDesc() string {
	var ee *exec.ExitError
	switch {
	case c.waitErr == nil:
		return "exit 0"
	case errors.As(c.waitErr, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + ws.Signal().String()
		}
		return fmt.Sprintf("exit %d", ee.ExitCode())
	default:
		return c.waitErr.Error()
	}
}

// logTail returns the last lines of the child's output.
func (c *child) logTail(lines int) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	b = bytes.TrimRight(b, "\n")
	ls := strings.Split(string(b), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// failure wraps err with the tail of the child's log, for the report.
func (c *child) failure(err error) error {
	return fmt.Errorf("%w\n--- last lines of the %s log (%s) ---\n%s", err, c.name, c.logPath, c.logTail(30))
}

// waitReady polls GET /readyz until it answers 200, the child exits, or
// timeout passes.
func (c *child) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for {
		if c.exited() {
			return c.failure(fmt.Errorf("%s exited before it was ready (%s)", c.name, c.exitDesc()))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return c.failure(fmt.Errorf("%s not ready after %s: /readyz: %s", c.name, timeout, last))
			}
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		case <-c.done:
		}
	}
}

// server is a tandem server the bench talks to, started by it or not.
type server struct {
	base     string // http://host:port
	token    string // admin token, "" for --target
	writeKey string
	proc     *child // nil for --target
}

// startServer starts `tandem serve` on dataDir with a fresh port and waits
// until it is ready. On error nothing is left running.
func startServer(ctx context.Context, name, dataDir, logPath, token string, extra ...string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--data-dir", dataDir, "--addr", addr, "--source-rate-limit", "0"}, extra...)
	c, err := startChild(name, addr, logPath, childEnv("TANDEM_ADMIN_TOKEN="+token), args...)
	if err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, 60*time.Second); err != nil {
		c.kill()
		return nil, err
	}
	return &server{base: c.base, token: token, proc: c}, nil
}

// createSource registers a server source through the management API and
// keeps its write key.
func (s *server) createSource(ctx context.Context) error {
	body := `{"name":"bench","kind":"server","owner":"it","purpose":"benchmark","dataCategories":[],"monthlyCost":0}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/api/v1/sources", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("create source: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("create source: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var out struct {
		ID       string `json:"id"`
		WriteKey string `json:"writeKey"`
		Approval string `json:"approval"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("create source: bad answer: %w", err)
	}
	if out.WriteKey == "" {
		return errors.New("create source: the answer has no writeKey")
	}
	if out.Approval != "" && out.Approval != "approved" {
		return fmt.Errorf("create source: source is %q, not approved; events would be refused", out.Approval)
	}
	s.writeKey = out.WriteKey
	return nil
}

// metrics scrapes /metrics once.
func (s *server) metrics(ctx context.Context, hc *http.Client) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseProm(resp.Body)
}

// userHZ is the unit of the CPU times in /proc/<pid>/stat. Linux fixes it
// at 100 for user space on every architecture Go supports.
const userHZ = 100

// parseProcStat reads utime and stime (fields 14 and 15) from the text of
// /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseProcStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: malformed /proc stat")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), so utime (14) is f[11] and stime (15) f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: malformed /proc stat")
	}
	u, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: malformed /proc stat")
	}
	return time.Duration(u+s) * time.Second / userHZ, nil
}
