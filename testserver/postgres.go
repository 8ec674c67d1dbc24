package testserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresServer is a PostgreSQL server run for the tests of one binary:
// its data directory and unix socket live in a temporary directory, it
// listens on 127.0.0.1 only, at a free port, and it keeps fsync,
// full_page_writes and synchronous_commit on (tandem refuses a server
// without them). It is started by the first [Postgres] or
// [PostgresInstance] call and stopped, its directory removed, when [Main]
// ends.
//
// Tests get their own database on it ([Postgres],
// [PostgresServer.NewDatabase]), owned by a role that is not a superuser.
//
// [PostgresServer.Stop] and [PostgresServer.Start] let failure tests take
// the server away and bring it back (same port, same data). The server is
// shared by every test of the binary, so a test that stops it must not run
// in parallel with other tests that use it: leave out t.Parallel (a test
// without it never runs beside other top-level tests of its package). A
// test that ends with the server stopped gets it started again.
type PostgresServer struct {
	bin      string // directory of initdb and pg_ctl
	dir      string // temporary directory: data, socket, log
	data     string
	logFile  string
	runAs    string // OS user that runs the server; "" for this process's
	port     int
	password string // of the postgres superuser and the tandem role

	mu      sync.Mutex // serializes Start and Stop
	running bool

	dbSeq atomic.Int64
}

const (
	// pgRole owns the test databases; it is not a superuser, like the
	// role a deployment would give tandem.
	pgRole = "tandem"
	// pgStartTimeout bounds pg_ctl start and stop (seconds).
	pgStartTimeout = "60"
)

var (
	pgOnce   sync.Once
	pgServer *PostgresServer
	pgErr    error

	// mainRunning is set by Main: servers outlive the test that starts
	// them, so only a binary whose TestMain stops them may start one.
	mainRunning atomic.Bool
)

// errPGMissing means PostgreSQL's programs are not installed.
var errPGMissing = errors.New("PostgreSQL's initdb and pg_ctl were not found in /usr/lib/postgresql/*/bin or $PATH")

// Postgres returns the URL (postgres://…) of a new, empty database on the
// binary's PostgreSQL server, dropped when t ends. The server starts on
// first use. When PostgreSQL is not installed, t is skipped (or fails when
// servers are required; see [Unavailable]). The test binary must run its
// tests through [Main].
func Postgres(t testing.TB) string {
	t.Helper()
	return PostgresInstance(t).NewDatabase(t)
}

// PostgresInstance returns the binary's PostgreSQL server, starting it on
// first use, for tests that need more than a database URL (such as
// stopping and starting the server). Like [Postgres], it skips t when
// PostgreSQL is not installed.
func PostgresInstance(t testing.TB) *PostgresServer {
	t.Helper()
	if !mainRunning.Load() {
		t.Fatal("testserver: PostgreSQL needs TestMain to call testserver.Main, which stops the server at the end")
	}
	pgOnce.Do(func() { pgServer, pgErr = startPostgres() })
	switch {
	case errors.Is(pgErr, errPGMissing):
		Unavailable(t, "PostgreSQL", "install the postgresql package (Debian: apt-get install postgresql)")
	case pgErr != nil:
		t.Fatalf("testserver: PostgreSQL: %v", pgErr)
	}
	s := pgServer
	t.Cleanup(func() {
		if err := s.ensureRunning(); err != nil {
			t.Errorf("testserver: restarting PostgreSQL after the test: %v", err)
		}
	})
	return s
}

// NewDatabase creates an empty database owned by the tandem role and
// returns its URL; it is dropped (closing connections left open) when t
// ends.
func (s *PostgresServer) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("tandem_test_%d", s.dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.admin(ctx, "CREATE DATABASE "+name+" OWNER "+pgRole); err != nil {
		t.Fatalf("testserver: create database: %v", err)
	}
	// Function rights are per database: what an erasure's scrub needs
	// (with pg_checkpoint, granted at start).
	if err := s.adminIn(ctx, name, "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO "+pgRole); err != nil {
		t.Fatalf("testserver: grant pg_switch_wal: %v", err)
	}
	t.Cleanup(func() {
		// A test that stopped the server and failed before starting it
		// again leaves it stopped.
		if err := s.ensureRunning(); err != nil {
			t.Errorf("testserver: restarting PostgreSQL: %v", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := s.admin(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testserver: drop database %s: %v", name, err)
		}
	})
	return s.URL(name)
}

// URL returns the URL of database dbname for the tandem role.
func (s *PostgresServer) URL(dbname string) string {
	return s.url(pgRole, dbname)
}

func (s *PostgresServer) url(role, dbname string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", role, s.password, s.port, dbname)
}

// DataDir is the server's data directory (tests search its files).
func (s *PostgresServer) DataDir() string { return s.data }

// Addr is the server's host:port.
func (s *PostgresServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Stop shuts the server down ("fast": open sessions are ended, in-flight
// transactions roll back) and waits until it is gone. Connections to it
// fail until [PostgresServer.Start].
func (s *PostgresServer) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	if err := s.pgCtl("stop", "-m", "fast"); err != nil {
		return err
	}
	s.running = false
	return nil
}

// Start starts a stopped server again, on the same port with the same
// data, and waits until it accepts connections.
func (s *PostgresServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	if err := s.pgCtl("start", "-l", s.logFile); err != nil {
		return err
	}
	s.running = true
	return nil
}

func (s *PostgresServer) ensureRunning() error {
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running {
		return nil
	}
	return s.Start()
}

// admin runs one statement as the superuser, in the postgres database.
func (s *PostgresServer) admin(ctx context.Context, stmt string) error {
	return s.adminIn(ctx, "postgres", stmt)
}

// adminIn runs one statement as the superuser in database dbname.
func (s *PostgresServer) adminIn(ctx context.Context, dbname, stmt string) error {
	conn, err := pgx.Connect(ctx, s.url("postgres", dbname))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, stmt)
	return err
}

// startPostgres makes a data directory and starts a server on it.
func startPostgres() (_ *PostgresServer, err error) {
	bin, err := findPGBin()
	if err != nil {
		return nil, err
	}
	s := &PostgresServer{bin: bin}
	var uid, gid = -1, -1
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs a postgres user to run the server: %w", err)
		}
		s.runAs = u.Username
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	if s.dir, err = os.MkdirTemp("", "tandem-postgres-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.pgCtl("stop", "-m", "immediate")
			os.RemoveAll(s.dir)
		}
	}()
	if uid >= 0 {
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return nil, err
		}
	}
	s.data = filepath.Join(s.dir, "data")
	s.logFile = filepath.Join(s.dir, "postgres.log")
	var pw [16]byte
	_, _ = rand.Read(pw[:])
	s.password = hex.EncodeToString(pw[:])

	pwFile := filepath.Join(s.dir, "pwfile")
	if err := os.WriteFile(pwFile, []byte(s.password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if uid >= 0 {
		if err := os.Chown(pwFile, uid, gid); err != nil {
			return nil, err
		}
	}
	// --no-sync only spares initdb's own fsyncs of the fresh files; the
	// server runs with fsync on.
	out, err := s.command("initdb", "-D", s.data, "-U", "postgres", "--pwfile="+pwFile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput()
	os.Remove(pwFile)
	if err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, lastLines(string(out), 20))
	}

	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`
# tandem tests
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
fsync = on
full_page_writes = on
synchronous_commit = on
max_connections = 300
shared_buffers = 32MB
# WAL segments a checkpoint no longer needs are removed, not recycled
# (renamed for reuse with their old bytes in them): the erasure tests
# search the data directory for erased values.
wal_recycle = off
min_wal_size = 32MB
`, s.port, s.dir)
	f, err := os.OpenFile(filepath.Join(s.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(conf)
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.admin(ctx, "CREATE ROLE "+pgRole+" LOGIN PASSWORD '"+s.password+"'"); err != nil {
		return nil, fmt.Errorf("create role: %w", err)
	}
	// What an erasure asks of the server after its VACUUM FULL (see
	// statestore/postgres.Scrub): checkpoints, and WAL switches (granted
	// per database, in NewDatabase). PostgreSQL before 15 has no
	// pg_checkpoint role; there the grant fails and an erasure's last
	// step reports it.
	_ = s.admin(ctx, "GRANT pg_checkpoint TO "+pgRole)
	atExit(s.close)
	return s, nil
}

// close stops the server for good and removes its directory.
func (s *PostgresServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		if err := s.pgCtl("stop", "-m", "fast"); err != nil {
			fmt.Fprintf(os.Stderr, "testserver: stopping PostgreSQL: %v\n", err)
		}
		s.running = false
	}
	os.RemoveAll(s.dir)
}

// pgCtl runs pg_ctl action on the data directory and waits for it.
func (s *PostgresServer) pgCtl(action string, args ...string) error {
	args = append([]string{action, "-D", s.data, "-w", "-t", pgStartTimeout}, args...)
	out, err := s.command("pg_ctl", args...).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(s.logFile)
		return fmt.Errorf("pg_ctl %s: %v: %s\nserver log:\n%s", action, err,
			strings.TrimSpace(string(out)), lastLines(string(log), 20))
	}
	return nil
}

// command runs one of PostgreSQL's programs, as the server's user.
func (s *PostgresServer) command(name string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	// The server's user may not be allowed into the test's directory.
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

// findPGBin returns the directory of the newest installed initdb and
// pg_ctl: Debian keeps them in /usr/lib/postgresql/VERSION/bin, off $PATH.
func findPGBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		return pgVersion(b) - pgVersion(a)
	})
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errPGMissing
}

// pgVersion is the major version in /usr/lib/postgresql/VERSION/bin, 0 if
// it is not a number.
func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
