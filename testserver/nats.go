package testserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// natsModule is the module the nats-server binary is built from: the one
// tandem embeds, at the version go.mod selects (go.mod lists it as a tool,
// so that the build has every checksum it needs).
const natsModule = "github.com/nats-io/nats-server/v2"

// NATSCluster is a JetStream cluster of nats-server processes on loopback,
// each with its data in its own temporary directory and every stored
// message synced to disk before it is acknowledged (sync_interval: always).
// The servers are stopped when the test that started them ends.
type NATSCluster struct {
	t     testing.TB // nil when shared
	bin   string
	nodes []*natsNode
}

type natsNode struct {
	name                 string
	port, route, monitor int
	dir, conf, logPath   string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartNATSCluster starts n JetStream servers clustered with each other and
// returns once the cluster has elected a JetStream meta leader. When the
// server cannot be built here it ends t with [Unavailable].
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("StartNATSCluster: %d nodes", n)
	}
	c, err := startNATSClusterRetry(t, n, false)
	if err != nil {
		t.Fatalf("start NATS cluster: %v", err)
	}
	return c
}

var shared struct {
	mu      sync.Mutex
	cluster *NATSCluster
	err     error
}

// SharedNATSCluster returns a three-node cluster like [StartNATSCluster]'s,
// started by the first test of the test binary that asks and shared by
// all: each test must use streams of its own and must not stop nodes (it
// cannot Kill or Restart them). [Main] stops it.
func SharedNATSCluster(t testing.TB) *NATSCluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil && shared.err == nil {
		shared.cluster, shared.err = startNATSClusterRetry(t, 3, true)
	}
	if shared.err != nil {
		t.Fatalf("start shared NATS cluster: %v", shared.err)
	}
	return shared.cluster
}

func startNATSClusterRetry(t testing.TB, n int, isShared bool) (*NATSCluster, error) {
	t.Helper()
	bin, err := natsServerBinary()
	if err != nil {
		Unavailable(t, "NATS cluster", err.Error())
	}
	var lastErr error
	for range 3 {
		c, err := startNATSCluster(t, bin, n, isShared)
		if err == nil {
			return c, nil
		}
		lastErr = err
		// A free port may have been taken between choosing and binding it:
		// start over with new ports, but only for that reason.
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func startNATSCluster(t testing.TB, bin string, n int, isShared bool) (*NATSCluster, error) {
	c := &NATSCluster{t: t, bin: bin}
	if isShared {
		c.t = nil
	}
	ports, err := freePorts(3 * n)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for i := range n {
		var dir string
		if isShared {
			if dir, err = os.MkdirTemp("", "tandem-nats-"); err != nil {
				return nil, err
			}
			dirs = append(dirs, dir)
		} else {
			dir = t.TempDir()
		}
		c.nodes = append(c.nodes, &natsNode{
			name: fmt.Sprintf("n%d", i),
			port: ports[3*i], route: ports[3*i+1], monitor: ports[3*i+2],
			dir: dir, conf: filepath.Join(dir, "nats.conf"), logPath: filepath.Join(dir, "nats.log"),
		})
	}
	for _, nd := range c.nodes {
		if err := os.WriteFile(nd.conf, c.config(nd), 0o600); err != nil {
			return nil, err
		}
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		if c.t != nil && c.t.Failed() {
			c.logTails()
		}
		for _, nd := range c.nodes {
			nd.kill()
		}
		for _, dir := range dirs {
			os.RemoveAll(dir)
		}
	}
	if isShared {
		atExit(stop)
	} else {
		t.Cleanup(stop)
	}
	for _, nd := range c.nodes {
		if err := nd.start(bin); err != nil {
			stop()
			return nil, err
		}
	}
	if err := c.waitListening(30 * time.Second); err != nil {
		stop()
		return nil, err
	}
	if err := c.WaitMetaLeader(60 * time.Second); err != nil {
		stop()
		return nil, err
	}
	return c, nil
}

// config is a node's configuration file.
func (c *NATSCluster) config(nd *natsNode) []byte {
	var routes []string
	for _, o := range c.nodes {
		if o != nd {
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.route))
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "server_name: %q\n", nd.name)
	fmt.Fprintf(&b, "listen: \"127.0.0.1:%d\"\n", nd.port)
	fmt.Fprintf(&b, "http: \"127.0.0.1:%d\"\n", nd.monitor)
	b.WriteString("max_payload: 8MB\n")
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", filepath.Join(nd.dir, "jetstream"))
	if len(c.nodes) > 1 {
		fmt.Fprintf(&b, "cluster {\n  name: \"tandem-test\"\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n",
			nd.route, strings.Join(routes, ", "))
	}
	return b.Bytes()
}

// Size is the number of nodes.
func (c *NATSCluster) Size() int { return len(c.nodes) }

// URL lists every node's client URL, comma-separated, as tandem's --log
// takes it.
func (c *NATSCluster) URL() string {
	urls := make([]string, len(c.nodes))
	for i := range c.nodes {
		urls[i] = c.NodeURL(i)
	}
	return strings.Join(urls, ",")
}

// NodeURL is node i's client URL.
func (c *NATSCluster) NodeURL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].port)
}

// MonitorURL is node i's HTTP monitoring endpoint (/varz, /jsz...).
func (c *NATSCluster) MonitorURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.nodes[i].monitor)
}

// Dir is node i's directory: its configuration, its log file and its
// JetStream store (streams, their Raft logs and snapshots).
func (c *NATSCluster) Dir(i int) string { return c.nodes[i].dir }

// NodeName is node i's server name, as JetStream reports stream and
// consumer leaders.
func (c *NATSCluster) NodeName(i int) string { return c.nodes[i].name }

// NodeIndex is the index of the node named name, or -1.
func (c *NATSCluster) NodeIndex(name string) int {
	for i, nd := range c.nodes {
		if nd.name == name {
			return i
		}
	}
	return -1
}

// Kill stops node i with SIGKILL and waits until it has exited.
func (c *NATSCluster) Kill(i int) {
	c.private()
	c.t.Helper()
	c.nodes[i].kill()
}

// Restart starts node i again, on the same ports and data, after [Kill].
// It returns once the node takes connections and, when a majority of the
// nodes run, the cluster has a meta leader again.
func (c *NATSCluster) Restart(i int) {
	c.private()
	c.t.Helper()
	nd := c.nodes[i]
	if nd.running() {
		c.t.Fatalf("NATS node %s restarted while running", nd.name)
	}
	if err := nd.start(c.bin); err != nil {
		c.t.Fatalf("restart NATS node %s: %v", nd.name, err)
	}
	if err := nd.waitListening(time.Now().Add(30 * time.Second)); err != nil {
		c.t.Fatalf("restart NATS node %s: %v", nd.name, err)
	}
	running := 0
	for _, nd := range c.nodes {
		if nd.running() {
			running++
		}
	}
	if 2*running > len(c.nodes) {
		if err := c.WaitMetaLeader(60 * time.Second); err != nil {
			c.t.Fatalf("restart NATS node %s: %v", nd.name, err)
		}
	}
}

func (c *NATSCluster) private() {
	if c.t == nil {
		panic("testserver: the shared NATS cluster's nodes cannot be stopped; use StartNATSCluster")
	}
}

// Running reports whether node i's process is running.
func (c *NATSCluster) Running(i int) bool { return c.nodes[i].running() }

// WaitMetaLeader waits until every running node names the same running
// node as the JetStream meta leader, and that leader sees every running
// node as current: replicated streams can then be placed.
func (c *NATSCluster) WaitMetaLeader(d time.Duration) error {
	deadline := time.Now().Add(d)
	hc := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for {
		if _, err := c.metaLeader(hc); err == nil {
			return nil
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no JetStream meta leader within %s: %s", d, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *NATSCluster) metaLeader(hc *http.Client) (string, error) {
	leader := ""
	for _, nd := range c.nodes {
		if !nd.running() {
			continue
		}
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", nd.monitor))
		if err != nil {
			return "", fmt.Errorf("%s: %w", nd.name, err)
		}
		var jsz struct {
			Meta *struct {
				Leader   string `json:"leader"`
				Size     int    `json:"cluster_size"`
				Replicas []struct {
					Name    string `json:"name"`
					Current bool   `json:"current"`
					Offline bool   `json:"offline"`
				} `json:"replicas"`
			} `json:"meta_cluster"`
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		resp.Body.Close()
		switch {
		case err != nil:
			return "", fmt.Errorf("%s: /jsz: %w", nd.name, err)
		case len(c.nodes) == 1:
			return nd.name, nil
		case jsz.Meta == nil || jsz.Meta.Leader == "":
			return "", fmt.Errorf("%s knows no meta leader", nd.name)
		case leader != "" && jsz.Meta.Leader != leader:
			return "", fmt.Errorf("nodes disagree on the meta leader: %s, %s", leader, jsz.Meta.Leader)
		case jsz.Meta.Size < c.running():
			// A node that has not yet learnt of every peer may still
			// follow a leader elected without it.
			return "", fmt.Errorf("%s knows %d of %d running nodes", nd.name, jsz.Meta.Size, c.running())
		}
		leader = jsz.Meta.Leader
		if leader == nd.name {
			// The leader places replicated streams on the peers it
			// sees: every running one must be current.
			current := 0
			for _, p := range jsz.Meta.Replicas {
				if i := c.NodeIndex(p.Name); i >= 0 && c.nodes[i].running() {
					if !p.Current || p.Offline {
						return "", fmt.Errorf("meta leader %s does not see %s as current", leader, p.Name)
					}
					current++
				}
			}
			if current < c.running()-1 {
				return "", fmt.Errorf("meta leader %s sees %d of %d other running nodes", leader, current, c.running()-1)
			}
		}
	}
	if i := c.NodeIndex(leader); i < 0 || !c.nodes[i].running() {
		return "", fmt.Errorf("meta leader %q is not running", leader)
	}
	return leader, nil
}

// running counts the nodes that run.
func (c *NATSCluster) running() int {
	n := 0
	for _, nd := range c.nodes {
		if nd.running() {
			n++
		}
	}
	return n
}

// waitListening waits until every node takes TCP connections on its
// client port.
func (c *NATSCluster) waitListening(d time.Duration) error {
	deadline := time.Now().Add(d)
	for _, nd := range c.nodes {
		if err := nd.waitListening(deadline); err != nil {
			return err
		}
	}
	return nil
}

func (nd *natsNode) waitListening(deadline time.Time) error {
	for {
		if nd.exited() {
			return fmt.Errorf("nats-server %s exited: %s", nd.name, nd.logTail(5))
		}
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", nd.port), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server %s not listening: %s", nd.name, nd.logTail(5))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logTails logs the end of every node's log.
func (c *NATSCluster) logTails() {
	for _, nd := range c.nodes {
		c.t.Logf("nats-server %s log (tail):\n%s", nd.name, nd.logTail(15))
	}
}

func (nd *natsNode) start(bin string) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(bin, "-c", nd.conf)
	cmd.Stdout = logf
	cmd.Stderr = logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nats-server %s: %w", nd.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	nd.cmd, nd.done = cmd, done
	return nil
}

// running reports whether the node's process was started and has not
// exited.
func (nd *natsNode) running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.done == nil {
		return false
	}
	select {
	case <-nd.done:
		return false
	default:
		return true
	}
}

// exited reports whether the node's process was started and has exited on
// its own or by kill.
func (nd *natsNode) exited() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.done == nil {
		return false
	}
	select {
	case <-nd.done:
		return true
	default:
		return false
	}
}

func (nd *natsNode) kill() {
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill() // SIGKILL
	<-done
}

func (nd *natsNode) logTail(lines int) string {
	b, err := os.ReadFile(nd.logPath)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

var natsBuild struct {
	once sync.Once
	path string
	err  error
}

// natsServerBinary returns the path of the nats-server binary built from
// natsModule at the version go.mod selects, building it into the user's
// cache directory the first time (once per version, shared by every test
// binary and every run).
func natsServerBinary() (string, error) {
	natsBuild.once.Do(func() {
		natsBuild.path, natsBuild.err = buildNATSServer()
	})
	return natsBuild.path, natsBuild.err
}

func buildNATSServer() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the go command is not on PATH; it builds nats-server from the Go module cache")
	}
	out, err := exec.Command(goBin, "list", "-m", "-f", "{{.Version}}", natsModule).Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %v", natsModule, commandError(err))
	}
	version := strings.TrimSpace(string(out))
	if version == "" || strings.ContainsAny(version, `/\ `) {
		return "", fmt.Errorf("go list -m %s: no usable version (%q)", natsModule, version)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "tandem-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nats-server-"+version)
	if usable(bin) {
		return bin, nil
	}
	// Test binaries of several packages may get here at once: one builds,
	// the others wait for it and find the binary.
	unlock, err := lockFile(bin + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if usable(bin) {
		return bin, nil
	}
	tmp := bin + ".tmp-" + strconv.Itoa(os.Getpid())
	defer os.Remove(tmp)
	cmd := exec.Command(goBin, "build", "-o", tmp, natsModule)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s@%s: %v: %s", natsModule, version, err, bytes.TrimSpace(out))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

func usable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func commandError(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return string(bytes.TrimSpace(ee.Stderr))
	}
	return err.Error()
}
