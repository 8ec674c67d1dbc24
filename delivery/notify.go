package delivery

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
)

// NoticeResult is one destination's answer to a notice.
type NoticeResult struct {
	Destination string // its id
	Name        string
	Err         error // nil: delivered
}

// noticeAttempts is how often a notice is tried per destination when the
// failure may heal.
const noticeAttempts = 3

// Notify sends body, one JSON object that is not an event (an erasure
// notice, see docs/privacy.md), once to every destination delivering on
// this node (approved and started), through the destination's own sender:
// a webhook receives it as one signed POST like an event. The
// destination's filter, mapping and consent check do not apply. A failure
// that may heal is tried again, up to three times with the retry policy's
// backoff. It returns each destination's result, by id.
func (m *Manager) Notify(ctx context.Context, messageID string, body json.RawMessage) []NoticeResult {
	m.mu.Lock()
	workers := make([]*worker, 0, len(m.workers))
	for _, w := range m.workers {
		workers = append(workers, w)
	}
	m.mu.Unlock()
	slices.SortFunc(workers, func(a, b *worker) int { return strings.Compare(a.d.ID, b.d.ID) })
	out := make([]NoticeResult, 0, len(workers))
	for _, w := range workers {
		var err error
		for n := 1; n <= noticeAttempts; n++ {
			err = w.sender.Send(ctx, []Outgoing{{MessageID: messageID, Body: body}})
			if err == nil || !retryable(err) || n == noticeAttempts {
				break
			}
			if !sleep(ctx, m.opts.Retry.Backoff(n, err)) {
				break
			}
		}
		if err == nil {
			m.attempts.Add(1, w.d.ID, "ok")
		} else {
			m.attempts.Add(1, w.d.ID, "failed")
		}
		out = append(out, NoticeResult{Destination: w.d.ID, Name: w.d.Name, Err: err})
	}
	return out
}
