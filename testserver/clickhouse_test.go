package testserver

import (
	"context"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// chCount runs a count query against addr as the default user.
func chCount(t *testing.T, addr, q string) (uint64, error) {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Addr: []string{addr}, DialTimeout: 2 * time.Second})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n uint64
	err = conn.QueryRow(ctx, q).Scan(&n)
	return n, err
}

// Each call gets a new database on the one shared server, dropped when
// its test ends.
func TestClickHouseDatabases(t *testing.T) {
	var urls []string
	t.Run("a", func(t *testing.T) { urls = append(urls, ClickHouse(t)) })
	t.Run("b", func(t *testing.T) { urls = append(urls, ClickHouse(t)) })
	if len(urls) != 2 {
		t.Fatalf("got %d URLs", len(urls))
	}
	a, b := urls[0], urls[1]
	hostA, dbA, _ := strings.Cut(strings.TrimPrefix(a, "clickhouse://"), "/")
	hostB, dbB, _ := strings.Cut(strings.TrimPrefix(b, "clickhouse://"), "/")
	if hostA != hostB || dbA == dbB {
		t.Fatalf("URLs %s and %s: want one server, two databases", a, b)
	}
	n, err := chCount(t, hostA, "SELECT count() FROM system.databases WHERE name IN ('"+dbA+"', '"+dbB+"')")
	if err != nil || n != 0 {
		t.Fatalf("%d of the databases remain after their tests (%v)", n, err)
	}
}

// A private server stops and starts again with its data.
func TestClickHouseStopStart(t *testing.T) {
	srv := StartClickHouse(t)
	url := srv.NewDatabase(t)
	db := url[strings.LastIndex(url, "/")+1:]
	if err := srv.exec("CREATE TABLE " + db + ".t (x UInt8) ENGINE = MergeTree ORDER BY x"); err != nil {
		t.Fatal(err)
	}
	if err := srv.exec("INSERT INTO " + db + ".t SELECT 7"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if srv.Running() {
		t.Fatal("Running after Stop")
	}
	if _, err := chCount(t, srv.Addr(), "SELECT count() FROM "+db+".t"); err == nil {
		t.Fatal("query succeeded with the server stopped")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if n, err := chCount(t, srv.Addr(), "SELECT count() FROM "+db+".t"); err != nil || n != 1 {
		t.Fatalf("after restart: %d rows, %v", n, err)
	}
}
