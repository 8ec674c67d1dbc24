package delivery_test

import (
	"errors"
	"testing"
	"time"

	"tandem/delivery"
	"tandem/governance"
)

func TestCheckConfig(t *testing.T) {
	m, err := delivery.New(delivery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := m.Types()
	for _, tc := range []struct {
		typ   string
		cfg   map[string]any
		field string
	}{
		{"fax", map[string]any{}, "type"},
		{"webhook", map[string]any{}, "config.url"},
		{"webhook", map[string]any{"url": "ftp://x.example/"}, "config.url"},
		{"webhook", map[string]any{"url": "http://2130706433/"}, "config.url"},
		{"webhook", map[string]any{"url": "http://10.1.2.3/"}, "config.url"},
		{"webhook", map[string]any{"url": "http://[::ffff:169.254.169.254]/"}, "config.url"},
		{"webhook", map[string]any{"url": "https://x.example/", "batch": 0.0}, "config.batch"},
		{"webhook", map[string]any{"url": "https://x.example/", "batch": 501.0}, "config.batch"},
		{"webhook", map[string]any{"url": "https://x.example/", "batch": 1.5}, "config.batch"},
		{"webhook", map[string]any{"url": "https://x.example/", "timeoutMs": "10"}, "config.timeoutMs"},
		{"webhook", map[string]any{"url": "https://x.example/", "secret": 5.0}, "config.secret"},
		{"webhook", map[string]any{"url": "https://x.example/", "secret": governance.SecretSet}, "config.secret"},
		{"webhook", map[string]any{"url": "https://x.example/", "headers": map[string]any{}}, "config.headers"},
		{"segment", map[string]any{"url": "https://api.example.com"}, "config.writeKey"},
		{"segment", map[string]any{"url": "https://api.example.com/?x=1", "writeKey": "k"}, "config.url"},
	} {
		_, err := reg.CheckConfig(tc.typ, tc.cfg, nil)
		var fe *governance.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s %v: %v, want a FieldError for %s", tc.typ, tc.cfg, err, tc.field)
		}
	}
	got, err := reg.CheckConfig("webhook", map[string]any{"url": "https://x.example/h"}, nil)
	if err != nil || got["batch"] != 1 || got["timeoutMs"] != 10000 || got["concurrency"] != 4 {
		t.Fatalf("defaults: %v %v", got, err)
	}
	// A secret left out, or sent back as shown, is kept.
	prev := map[string]any{"url": "https://x.example/h", "secret": "s1"}
	for _, cfg := range []map[string]any{{"url": "https://y.example/"}, {"url": "https://y.example/", "secret": governance.SecretSet}} {
		got, err := reg.CheckConfig("webhook", cfg, prev)
		if err != nil || got["secret"] != "s1" || got["url"] != "https://y.example/" {
			t.Errorf("keep secret: %v %v", got, err)
		}
	}
	got, err = reg.CheckConfig("segment", map[string]any{"url": "https://api.example.com/", "writeKey": "k"}, nil)
	if err != nil || got["url"] != "https://api.example.com" || got["batch"] != 100 {
		t.Fatalf("segment: %v %v", got, err)
	}
	if s := reg.Secrets("segment"); len(s) != 1 || s[0] != "writeKey" {
		t.Errorf("segment secrets %v", s)
	}
}

func TestSign(t *testing.T) {
	// HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), RFC 4231 style known answer.
	got := delivery.Sign("key", []byte("The quick brown fox jumps over the lazy dog"))
	if got != "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8" {
		t.Fatalf("Sign = %s", got)
	}
}

func TestBackoff(t *testing.T) {
	p := delivery.RetryPolicy{Base: 100 * time.Millisecond, Max: time.Second, MaxAttempts: 5, MaxRetryAfter: 3 * time.Second}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 5: time.Second, 9: time.Second} {
		for range 50 {
			got := p.Backoff(n, errors.New("x"))
			if got < want/2 || got > want {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", n, got, want/2, want)
			}
		}
	}
	if got := p.Backoff(1, &delivery.SendError{Retry: true, RetryAfter: 2 * time.Second}); got != 2*time.Second {
		t.Errorf("Retry-After 2s: %v", got)
	}
	if got := p.Backoff(1, &delivery.SendError{Retry: true, RetryAfter: time.Hour}); got != 3*time.Second {
		t.Errorf("Retry-After 1h: %v, want the 3s cap", got)
	}
}
