package delivery

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"tandem/delivery/guard"
)

// segmentMaxBody keeps each request under the Segment HTTP Tracking API's
// 500 KB batch limit.
const segmentMaxBody = 480 << 10

// segment forwards events to another Segment-compatible HTTP Tracking API
// (Segment itself, or another tandem): POST {url}/v1/batch with the write
// key as the Basic-auth user name and {"batch": [...], "sentAt": now}.
//
// Config: url (the API's base, e.g. https://api.segment.io; required),
// writeKey (required, secret), batch (events per request, 1..500, default
// 100; a request is also cut at 480 KB), timeoutMs, concurrency and
// rateLimit as for webhooks.
type segment struct{}

func (segment) Name() string      { return "segment" }
func (segment) Secrets() []string { return []string{"writeKey"} }

func (segment) Check(cfg, prev map[string]any, env Env) (map[string]any, error) {
	out := make(map[string]any, len(cfg))
	for k, v := range cfg {
		out[k] = v
	}
	if err := onlyKeys(out, "url", "writeKey", "batch", "timeoutMs", "concurrency", "rateLimit"); err != nil {
		return nil, err
	}
	u, err := urlKey(out, "url", env.Guard)
	if err != nil {
		return nil, err
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fieldErr("url", "must be the API's base URL, without query or fragment")
	}
	out["url"] = strings.TrimSuffix(u.String(), "/")
	key, err := secretKey(out, prev, "writeKey")
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, fieldErr("writeKey", "is required: the write key of the receiving source")
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
	if _, err := floatKey(out, "rateLimit", 0, 100000); err != nil {
		return nil, err
	}
	return out, nil
}

func (s segment) Open(cfg map[string]any, env Env) (Sender, error) {
	cfg, err := s.Check(cfg, nil, Env{})
	if err != nil {
		return nil, err
	}
	rate, _ := cfg["rateLimit"].(float64)
	return &segmentSender{
		url: cfg["url"].(string) + "/v1/batch", key: cfg["writeKey"].(string),
		batch: cfg["batch"].(int), lanes: cfg["concurrency"].(int), rate: rate,
		client: env.Client(time.Duration(cfg["timeoutMs"].(int)) * time.Millisecond),
	}, nil
}

type segmentSender struct {
	url, key     string
	batch, lanes int
	rate         float64
	client       *http.Client
}

func (s *segmentSender) MaxBatch() int    { return s.batch }
func (s *segmentSender) Concurrency() int { return s.lanes }
func (s *segmentSender) Rate() float64    { return s.rate }

// Send posts the events in as few requests as the size limit allows, in
// order; the first failure ends it (what went before is sent again on a
// retry: the receiver deduplicates by messageId).
func (s *segmentSender) Send(ctx context.Context, events []Outgoing) error {
	for len(events) > 0 {
		var b bytes.Buffer
		b.WriteString(`{"batch":[`)
		n := 0
		for n < len(events) && (n == 0 || b.Len()+len(events[n].Body)+100 < segmentMaxBody) {
			if n > 0 {
				b.WriteByte(',')
			}
			b.Write(events[n].Body)
			n++
		}
		b.WriteString(`],"sentAt":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`)
		if err := s.post(ctx, b.Bytes()); err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}

func (s *segmentSender) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return &SendError{Msg: "building request: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tandem-forward")
	req.SetBasicAuth(s.key, "")
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, guard.ErrRefused) {
			return &SendError{Msg: err.Error()}
		}
		return stripURL(err)
	}
	text := guard.ReadLimited(resp.Body, responseLimit)
	resp.Body.Close()
	return classify(resp, text)
}
