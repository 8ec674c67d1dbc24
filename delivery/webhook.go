package delivery

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"tandem/delivery/guard"
)

// Webhook limits and defaults.
const (
	webhookMaxBatch       = 500
	webhookDefaultTimeout = 10000 // ms
	webhookMaxTimeout     = 60000 // ms
	webhookDefaultLanes   = 4
	webhookMaxLanes       = 64
	// responseLimit is how much of a response body is read (for the error
	// shown in deliveries); the rest is discarded.
	responseLimit = 4096
)

// SignatureHeader carries the body's HMAC-SHA256 under the destination's
// secret: "sha256=" and the lower-case hex digest.
const SignatureHeader = "X-Tandem-Signature"

// Sign returns the X-Tandem-Signature value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// webhook POSTs events as JSON: one event per request, or with config
// batch > 1, {"batch": [...]} of up to batch events.
//
// Config: url (required), secret (optional; signs each body), batch
// (1..500, default 1), timeoutMs (1..60000, default 10000), concurrency
// (ordered lanes, 1..64, default 4), rateLimit (requests per second, 0 =
// none).
type webhook struct{}

func (webhook) Name() string      { return "webhook" }
func (webhook) Secrets() []string { return []string{"secret"} }

func (webhook) Check(cfg, prev map[string]any, env Env) (map[string]any, error) {
	out := make(map[string]any, len(cfg))
	for k, v := range cfg {
		out[k] = v
	}
	if err := onlyKeys(out, "url", "secret", "batch", "timeoutMs", "concurrency", "rateLimit"); err != nil {
		return nil, err
	}
	if _, err := urlKey(out, "url", env.Guard); err != nil {
		return nil, err
	}
	if _, err := secretKey(out, prev, "secret"); err != nil {
		return nil, err
	}
	if _, err := intKey(out, "batch", 1, 1, webhookMaxBatch); err != nil {
		return nil, err
	}
	if _, err := intKey(out, "timeoutMs", webhookDefaultTimeout, 1, webhookMaxTimeout); err != nil {
		return nil, err
	}
	if _, err := intKey(out, "concurrency", webhookDefaultLanes, 1, webhookMaxLanes); err != nil {
		return nil, err
	}
	if _, err := floatKey(out, "rateLimit", 0, 100000); err != nil {
		return nil, err
	}
	return out, nil
}

func (w webhook) Open(cfg map[string]any, env Env) (Sender, error) {
	cfg, err := w.Check(cfg, nil, Env{})
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(cfg["timeoutMs"].(int)) * time.Millisecond
	secret, _ := cfg["secret"].(string)
	rate, _ := cfg["rateLimit"].(float64)
	return &webhookSender{
		url: cfg["url"].(string), secret: secret, batch: cfg["batch"].(int), lanes: cfg["concurrency"].(int),
		rate: rate, client: env.Client(timeout),
	}, nil
}

type webhookSender struct {
	url, secret  string
	batch, lanes int
	rate         float64
	client       *http.Client
}

func (s *webhookSender) MaxBatch() int    { return s.batch }
func (s *webhookSender) Concurrency() int { return s.lanes }
func (s *webhookSender) Rate() float64    { return s.rate }

func (s *webhookSender) Send(ctx context.Context, events []Outgoing) error {
	if len(events) == 0 {
		return nil
	}
	var body []byte
	key := events[0].MessageID
	if s.batch == 1 && len(events) == 1 {
		body = events[0].Body
	} else {
		var b bytes.Buffer
		b.WriteString(`{"batch":[`)
		ids := make([]string, len(events))
		for i, e := range events {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(e.Body)
			ids[i] = e.MessageID
		}
		b.WriteString(`]}`)
		body = b.Bytes()
		sum := sha256.Sum256([]byte(strings.Join(ids, "\n")))
		key = "batch-" + hex.EncodeToString(sum[:16])
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return &SendError{Msg: "building request: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tandem-webhook")
	req.Header.Set("Idempotency-Key", key)
	if s.secret != "" {
		req.Header.Set(SignatureHeader, Sign(s.secret, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, guard.ErrRefused) {
			return &SendError{Msg: err.Error()} // a refused address does not heal by waiting
		}
		return stripURL(err)
	}
	text := guard.ReadLimited(resp.Body, responseLimit)
	resp.Body.Close()
	return classify(resp, text)
}

// classify turns a response into nil (2xx) or a *SendError: 408, 429 and
// 5xx are retried (429 and 503 honour Retry-After), other codes are not.
func classify(resp *http.Response, body []byte) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	e := &SendError{Status: resp.StatusCode}
	e.Retry = resp.StatusCode == 408 || resp.StatusCode == 429 || resp.StatusCode >= 500
	if e.Retry {
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	snippet := strings.TrimSpace(string(body))
	if len(snippet) > 200 {
		snippet = snippet[:200] + "…"
	}
	e.Msg = "HTTP " + strconv.Itoa(resp.StatusCode)
	if snippet != "" {
		e.Msg += ": " + strings.ToValidUTF8(snippet, "?")
	}
	return e
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(h); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// stripURL drops the URL from a *url.Error: the URL may carry a token in
// its path or query, and errors end up in deliveries and logs.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
