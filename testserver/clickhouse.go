package testserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// ClickHouse user with a password, besides "default" (no password), for
// tests of authentication and of password redaction.
const (
	ClickHouseUser     = "tandem"
	ClickHousePassword = "tandem-test-secret"
)

var (
	chOnce   sync.Once
	chShared *ClickHouseServer
	chErr    error
)

// ClickHouse returns the URL (clickhouse://127.0.0.1:PORT/DB, user
// default) of a new, empty database on a ClickHouse server shared by the
// tests of this binary, started on first use and stopped by [Main]. The
// database is dropped when t ends. Tests that stop or restart a server
// use [StartClickHouse] instead.
func ClickHouse(t testing.TB) string {
	t.Helper()
	chOnce.Do(func() {
		chShared, chErr = startClickHouse()
		if chErr == nil {
			atExit(chShared.stop)
		}
	})
	if errors.Is(chErr, errNotInstalled) {
		Unavailable(t, "ClickHouse", "clickhouse-server is not installed; install the clickhouse-server package")
	}
	if chErr != nil {
		t.Fatalf("testserver: start ClickHouse: %v", chErr)
	}
	return chShared.NewDatabase(t)
}

// ClickHouseServer is a ClickHouse server of a test, on loopback, with its
// data in a temporary directory.
type ClickHouseServer struct {
	dir      string
	tcpPort  int
	httpPort int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartClickHouse starts a ClickHouse server of t's own (not shared: t may
// stop and start it), stopped when t ends.
func StartClickHouse(t testing.TB) *ClickHouseServer {
	t.Helper()
	s, err := startClickHouse()
	if errors.Is(err, errNotInstalled) {
		Unavailable(t, "ClickHouse", "clickhouse-server is not installed; install the clickhouse-server package")
	}
	if err != nil {
		t.Fatalf("testserver: start ClickHouse: %v", err)
	}
	t.Cleanup(s.stop)
	return s
}

var errNotInstalled = errors.New("not installed")

// clickHouseBinary finds the server program.
func clickHouseBinary() (string, error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errNotInstalled
}

func startClickHouse() (*ClickHouseServer, error) {
	if _, err := clickHouseBinary(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tandem-clickhouse-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &ClickHouseServer{dir: dir, tcpPort: ports[0], httpPort: ports[1]}
	if err := s.writeConfig(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.Start(); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// Dir is the server's directory: its configuration, data (parts,
// mutation files, metadata), temporary files and logs.
func (s *ClickHouseServer) Dir() string { return s.dir }

// Addr is the server's native protocol address, 127.0.0.1:PORT.
func (s *ClickHouseServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.tcpPort) }

// URL returns the URL of database db as the default user.
func (s *ClickHouseServer) URL(db string) string { return "clickhouse://" + s.Addr() + "/" + db }

// NewDatabase creates a database with a random name and returns its URL;
// it is dropped when t ends (if the server is running then).
func (s *ClickHouseServer) NewDatabase(t testing.TB) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	db := "test_" + hex.EncodeToString(b[:])
	if err := s.exec("CREATE DATABASE " + db); err != nil {
		t.Fatalf("testserver: create ClickHouse database: %v", err)
	}
	t.Cleanup(func() {
		if s.Running() {
			_ = s.exec("DROP DATABASE IF EXISTS " + db)
		}
	})
	return s.URL(db)
}

// exec runs one statement as the default user.
func (s *ClickHouseServer) exec(stmt string) error {
	conn, err := ch.Open(&ch.Options{Addr: []string{s.Addr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return conn.Exec(ctx, stmt)
}

// Running reports whether the server process is running.
func (s *ClickHouseServer) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Start starts the server (again, after Stop: same ports and data) and
// waits until it answers queries.
func (s *ClickHouseServer) Start() error {
	bin, err := clickHouseBinary()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.done != nil {
		select {
		case <-s.done:
		default:
			s.mu.Unlock()
			return errors.New("already running")
		}
	}
	out, err := os.OpenFile(filepath.Join(s.dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	cmd := exec.Command(bin, "--config-file="+filepath.Join(s.dir, "config.xml"))
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	// The server dies with the test binary even if Main never runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		s.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		out.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for {
		err := s.ping()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("clickhouse-server exited at start; see %s", filepath.Join(s.dir, "log"))
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("clickhouse-server not ready after 60s: %v; see %s", err, filepath.Join(s.dir, "log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *ClickHouseServer) ping() error {
	conn, err := ch.Open(&ch.Options{Addr: []string{s.Addr()}, DialTimeout: time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return conn.Ping(ctx)
}

// Stop stops the server (SIGTERM, then SIGKILL after 20 s) and waits for
// it to exit; its data stays for Start.
func (s *ClickHouseServer) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *ClickHouseServer) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// stop stops the server for good and removes its data.
func (s *ClickHouseServer) stop() {
	s.Stop()
	os.RemoveAll(s.dir)
}

// writeConfig writes a minimal server configuration into s.dir: loopback
// only, the two ports, every path under s.dir, small caches and few
// background threads (the machine is shared with builds and other
// tests), logs at warning level in s.dir/log, and the MergeTree
// settings docs/privacy.md asks for: parts replaced by a merge or a
// mutation (an erasure's) removed after a second, and one finished
// mutation kept per table.
//
// Running as root needs nothing special for the ClickHouse 18.16 that
// Debian ships: the server runs as the invoking user and owns the files
// it creates in s.dir (no switch to the clickhouse user happens when the
// config is given on the command line).
func (s *ClickHouseServer) writeConfig() error {
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o700); err != nil {
			return err
		}
	}
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>%[1]s/log/server.log</log>
    <errorlog>%[1]s/log/server.err.log</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%[2]d</tcp_port>
  <http_port>%[3]d</http_port>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
  <merge_tree>
    <old_parts_lifetime>1</old_parts_lifetime>
    <finished_mutations_to_keep>1</finished_mutations_to_keep>
  </merge_tree>
</yandex>
`, s.dir, s.tcpPort, s.httpPort)
	users := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>2000000000</max_memory_usage>
      <max_threads>2</max_threads>
      <background_pool_size>2</background_pool_size>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
    <%[1]s>
      <password>%[2]s</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </%[1]s>
  </users>
  <quotas>
    <default>
      <interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval>
    </default>
  </quotas>
</yandex>
`, ClickHouseUser, ClickHousePassword)
	if err := os.WriteFile(filepath.Join(s.dir, "config.xml"), []byte(config), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.dir, "users.xml"), []byte(users), 0o600)
}
