package guard_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"tandem/delivery/guard"
)

func mustGuard(t *testing.T, allow ...string) *guard.Guard {
	t.Helper()
	g, err := guard.New(allow)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestCheckAddresses(t *testing.T) {
	g := mustGuard(t)
	refused := []string{
		"127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1", "::ffff:7f00:1",
		"10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "fc00::1", "fd12:3456::1",
		"169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "fe80::1", "fe80::1%eth0",
		"100.64.0.1", "100.127.255.255", "0.0.0.0", "::", "224.0.0.1", "239.255.255.250", "ff02::1",
		"255.255.255.255", "240.0.0.1", "::ffff:10.0.0.1", "::ffff:192.168.0.1",
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2002:a9fe:a9fe::1", "::127.0.0.1",
	}
	for _, s := range refused {
		err := g.Check(netip.MustParseAddr(s))
		if !errors.Is(err, guard.ErrRefused) {
			t.Errorf("Check(%s) = %v, want refused", s, err)
		}
	}
	allowed := []string{"93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "100.128.0.1", "172.32.0.1", "64:ff9b::808:808"}
	for _, s := range allowed {
		if err := g.Check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("Check(%s) = %v, want allowed", s, err)
		}
	}
}

func TestAllowList(t *testing.T) {
	g := mustGuard(t, "127.0.0.0/8", "10.1.0.0/16")
	for _, s := range []string{"127.0.0.1", "127.0.0.2", "::ffff:127.0.0.1", "10.1.2.3"} {
		if err := g.Check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("Check(%s) = %v, want allowed", s, err)
		}
	}
	for _, s := range []string{"::1", "10.2.0.1", "169.254.169.254", "192.168.0.1"} {
		if err := g.Check(netip.MustParseAddr(s)); !errors.Is(err, guard.ErrRefused) {
			t.Errorf("Check(%s) = %v, want refused", s, err)
		}
	}
	if _, err := guard.New([]string{"not-a-cidr"}); err == nil {
		t.Error("New accepted a bad CIDR")
	}
}

// TestDialRefusedBeforeConnect dials non-loopback refused addresses: the
// Control hook fails the dial before connect(2), so no packet leaves.
func TestDialRefusedBeforeConnect(t *testing.T) {
	g := mustGuard(t)
	d := g.Dialer(time.Second)
	var seen []string
	d.Control = func(network, address string, c syscall.RawConn) error {
		seen = append(seen, address)
		return g.Control(network, address, c)
	}
	for _, addr := range []string{"10.0.0.1:80", "169.254.169.254:80", "192.168.0.1:443", "[fd00:ec2::254]:80", "[fe80::1]:80", "100.64.0.1:80"} {
		start := time.Now()
		_, err := d.DialContext(context.Background(), "tcp", addr)
		if !errors.Is(err, guard.ErrRefused) {
			t.Errorf("dial %s: %v, want refused", addr, err)
		}
		if time.Since(start) > 500*time.Millisecond {
			t.Errorf("dial %s took %v: it waited on the network", addr, time.Since(start))
		}
	}
	if len(seen) != 6 {
		t.Errorf("Control saw %v", seen)
	}
}

func receiver(t *testing.T, hits *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(200)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestLoopbackEndToEnd(t *testing.T) {
	var hits atomic.Int64
	srv := receiver(t, &hits)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]

	refusedClient := mustGuard(t).Client(2 * time.Second)
	for _, u := range []string{srv.URL, "http://localhost:" + port, "http://[::ffff:127.0.0.1]:" + port} {
		resp, err := refusedClient.Get(u)
		if err == nil {
			resp.Body.Close()
			t.Errorf("GET %s: no error", u)
		} else if !errors.Is(err, guard.ErrRefused) {
			t.Errorf("GET %s: %v, want refused", u, err)
		}
	}
	// [::1]: refused whether or not the machine has IPv6 loopback.
	if resp, err := refusedClient.Get("http://[::1]:" + port); err == nil {
		resp.Body.Close()
		t.Error("GET [::1]: no error")
	} else if !errors.Is(err, guard.ErrRefused) {
		t.Errorf("GET [::1]: %v, want refused", err)
	}
	if hits.Load() != 0 {
		t.Fatalf("receiver was reached %d times", hits.Load())
	}

	allowed := mustGuard(t, "127.0.0.0/8").Client(2 * time.Second)
	resp, err := allowed.Get(srv.URL)
	if err != nil {
		t.Fatalf("allowed GET: %v", err)
	}
	resp.Body.Close()
	if hits.Load() != 1 {
		t.Fatalf("hits = %d, want 1", hits.Load())
	}
}

// TestDecimalHost: 2130706433 is 127.0.0.1 to inet_aton. The URL check
// refuses it outright, and a client does not reach the receiver with it.
func TestDecimalHost(t *testing.T) {
	var hits atomic.Int64
	srv := receiver(t, &hits)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	for _, h := range []string{"2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1", "017700000001"} {
		u, err := url.Parse("http://" + h + ":" + port + "/")
		if err != nil {
			t.Fatalf("url.Parse(%s): %v", h, err)
		}
		if err := guard.CheckURL(u); !errors.Is(err, guard.ErrRefused) {
			t.Errorf("CheckURL(%s) = %v, want refused", u, err)
		}
		// Even with loopback allowed, no client call gets there through
		// a numeric host (Go's own resolver would not read it as an
		// address, but the C library's may).
		resp, err := mustGuard(t, "127.0.0.0/8").Client(time.Second).Get(u.String())
		if err == nil {
			resp.Body.Close()
			t.Errorf("GET %s: no error", u)
		} else if !errors.Is(err, guard.ErrRefused) {
			t.Errorf("GET %s: %v, want refused", u, err)
		}
	}
	for _, ok := range []string{"http://example.com/x", "https://127.0.0.1:8080/", "http://[::1]/", "http://1.example/"} {
		u, _ := url.Parse(ok)
		if err := guard.CheckURL(u); err != nil {
			t.Errorf("CheckURL(%s) = %v", ok, err)
		}
	}
	for _, bad := range []string{"ftp://example.com/", "http://user:pw@example.com/", "http:///x", "file:///etc/passwd"} {
		u, _ := url.Parse(bad)
		if err := guard.CheckURL(u); !errors.Is(err, guard.ErrRefused) {
			t.Errorf("CheckURL(%s) = %v, want refused", bad, err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("receiver was reached %d times", hits.Load())
	}
}

// TestRedirectToRefused: 127.0.0.1 is allowed, and it redirects to
// 127.0.0.2 and [::1], which are not: the client follows no such hop.
func TestRedirectToRefused(t *testing.T) {
	var hits atomic.Int64
	// The target listens on 127.0.0.2 when the system lets us (Linux does).
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	target := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	})}}
	target.Start()
	t.Cleanup(target.Close)
	for _, to := range []string{target.URL + "/secret", "http://[::1]:" + target.URL[strings.LastIndex(target.URL, ":")+1:] + "/secret"} {
		redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, to, http.StatusFound)
		}))
		c := mustGuard(t, "127.0.0.1/32").Client(2 * time.Second)
		resp, err := c.Get(redirector.URL)
		if err == nil {
			resp.Body.Close()
			t.Errorf("redirect to %s: followed", to)
		} else if !errors.Is(err, guard.ErrRefused) {
			t.Errorf("redirect to %s: %v, want refused", to, err)
		}
		redirector.Close()
	}
	// With 127.0.0.2 allowed too, the same redirect is followed: the test
	// can fail.
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/ok", http.StatusFound)
	}))
	defer redirector.Close()
	c := mustGuard(t, "127.0.0.1/32", "127.0.0.2/32").Client(2 * time.Second)
	resp, err := c.Get(redirector.URL)
	if err != nil {
		t.Fatalf("allowed redirect: %v", err)
	}
	resp.Body.Close()
	if got := hits.Load(); got != 1 {
		t.Fatalf("target hits = %d, want 1 (only the allowed redirect)", got)
	}
}

func TestReadLimited(t *testing.T) {
	body := strings.Repeat("x", 10000)
	if got := guard.ReadLimited(strings.NewReader(body), 100); len(got) != 100 {
		t.Fatalf("read %d bytes", len(got))
	}
}
