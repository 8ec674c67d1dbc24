package jetstream

import "testing"

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                    "nats://127.0.0.1:4222",
		"nats://alice:s3cret@a:4222,nats://b:4222": "nats://alice:xxxxx@a:4222,nats://b:4222",
		"nats://tok3n@a:4222":                      "nats://xxxxx@a:4222",
		"nats://a:4222, nats://bob:pw@b:4222":      "nats://a:4222,nats://bob:xxxxx@b:4222",
		"nats://u:p%zz@a:4222":                     "xxxxx@a:4222",
	} {
		if got := redactURLs(in); got != want {
			t.Errorf("redactURLs(%q) = %q, want %q", in, got, want)
		}
	}
}
