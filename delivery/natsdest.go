package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"tandem/delivery/guard"
)

// natsType publishes each event to a JetStream subject on a NATS server
// (not tandem's own event log): one message per event, its body the event
// JSON, its Nats-Msg-Id header the messageId, so a stream with a
// duplicate window drops a redelivered event. The publish waits for the
// stream's acknowledgement.
//
// Config: url (nats://host:port; required), subject (required; a stream
// must capture it), token (optional, secret), batch (events published
// before waiting for their acknowledgements, 1..500, default 100),
// timeoutMs (connect and acknowledgement wait, default 10000),
// concurrency.
type natsType struct{}

func (natsType) Name() string      { return "nats" }
func (natsType) Secrets() []string { return []string{"token"} }

func (natsType) Check(cfg, prev map[string]any, env Env) (map[string]any, error) {
	out := make(map[string]any, len(cfg))
	for k, v := range cfg {
		out[k] = v
	}
	if err := onlyKeys(out, "url", "subject", "token", "batch", "timeoutMs", "concurrency"); err != nil {
		return nil, err
	}
	s, _ := out["url"].(string)
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Scheme != "nats" || u.Host == "" || u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, fieldErr("url", "is required: nats://host:port")
	}
	if err := guard.CheckHost(u); err != nil {
		return nil, fieldErr("url", strings.TrimPrefix(err.Error(), "guard: "))
	}
	if env.Guard != nil {
		if ip, err := parseIP(u.Hostname()); err == nil {
			if err := env.Guard.Check(ip); err != nil {
				return nil, fieldErr("url", strings.TrimPrefix(err.Error(), "guard: "))
			}
		}
	}
	out["url"] = "nats://" + u.Host
	subj, _ := out["subject"].(string)
	if subj == "" || len(subj) > 255 || strings.ContainsAny(subj, " \t\r\n*>") || strings.HasPrefix(subj, ".") ||
		strings.HasSuffix(subj, ".") || strings.Contains(subj, "..") {
		return nil, fieldErr("subject", "is required: a NATS subject without wildcards or spaces")
	}
	if _, err := secretKey(out, prev, "token"); err != nil {
		return nil, err
	}
	if _, err := intKey(out, "batch", 100, 1, webhookMaxBatch); err != nil {
		return nil, err
	}
	if _, err := intKey(out, "timeoutMs", webhookDefaultTimeout, 1, webhookMaxTimeout); err != nil {
		return nil, err
	}
	if _, err := intKey(out, "concurrency", webhookDefaultLanes, 1, webhookMaxLanes); err != nil {
		return nil, err
	}
	return out, nil
}

func (t natsType) Open(cfg map[string]any, env Env) (Sender, error) {
	cfg, err := t.Check(cfg, nil, Env{})
	if err != nil {
		return nil, err
	}
	token, _ := cfg["token"].(string)
	return &natsSender{
		url: cfg["url"].(string), subject: cfg["subject"].(string), token: token,
		batch: cfg["batch"].(int), lanes: cfg["concurrency"].(int),
		timeout: time.Duration(cfg["timeoutMs"].(int)) * time.Millisecond, guard: env.Guard,
	}, nil
}

type natsSender struct {
	url, subject, token string
	batch, lanes        int
	timeout             time.Duration
	guard               *guard.Guard

	mu sync.Mutex
	nc *nats.Conn
	js jsapi.JetStream
}

func (s *natsSender) MaxBatch() int    { return s.batch }
func (s *natsSender) Concurrency() int { return s.lanes }
func (s *natsSender) Rate() float64    { return 0 }

// conn connects on first use, through the SSRF guard; the connection then
// reconnects by itself.
func (s *natsSender) conn() (jsapi.JetStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.js != nil {
		return s.js, nil
	}
	opts := []nats.Option{nats.Name("tandem-destination"), nats.Timeout(s.timeout), nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second), nats.RetryOnFailedConnect(false)}
	if s.guard != nil {
		opts = append(opts, nats.SetCustomDialer(s.guard.Dialer(s.timeout)))
	}
	if s.token != "" {
		opts = append(opts, nats.Token(s.token))
	}
	nc, err := nats.Connect(s.url, opts...)
	if err != nil {
		return nil, err
	}
	js, err := jsapi.New(nc, jsapi.WithDefaultTimeout(s.timeout))
	if err != nil {
		nc.Close()
		return nil, err
	}
	s.nc, s.js = nc, js
	return js, nil
}

func (s *natsSender) Send(ctx context.Context, events []Outgoing) error {
	js, err := s.conn()
	if err != nil {
		if errors.Is(err, guard.ErrRefused) {
			return &SendError{Msg: "connect: " + err.Error()}
		}
		return fmt.Errorf("connect: %w", err)
	}
	futures := make([]jsapi.PubAckFuture, 0, len(events))
	for _, e := range events {
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: s.subject, Data: e.Body}, jsapi.WithMsgID(e.MessageID))
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		futures = append(futures, f)
	}
	wait := time.NewTimer(s.timeout)
	defer wait.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			var apiErr *jsapi.APIError
			if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 {
				return &SendError{Status: apiErr.Code, Msg: "publish: " + err.Error()}
			}
			return fmt.Errorf("publish: %w", err)
		case <-wait.C:
			return fmt.Errorf("publish: no acknowledgement within %v", s.timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close closes the connection.
func (s *natsSender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nc != nil {
		s.nc.Close()
		s.nc, s.js = nil, nil
	}
	return nil
}
