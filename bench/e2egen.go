package bench

import (
	"bytes"
	"fmt"
	"time"
)

// The e2e load: web traffic of people who arrive anonymous and identify.
//
// Each request carries ceil(batch / eventsPerProfile) people, each with
// eventsPerProfile events in a row (the last one may have fewer), like an
// SDK flushing a few sessions at once. A person's first half are page views
// with only an anonymousId; then, with two or more identifiers, an
// identify joins the anonymousId to a userId (and with three to an e-mail
// address in its traits); the rest are tracks carrying both ids, as
// analytics.js sends them after an identify. With one identifier every
// event carries only a userId (known users, nothing to join).
//
// Every identifier and messageId holds the request's counter digits after
// idPrefix, so patching the counter (template.next) makes new people and
// new messageIds for every request without encoding JSON, and the log
// baseline's encodeChunk finds and patches them in the log entries too.

var e2ePages = []string{"Home", "Pricing", "Product", "Docs", "Checkout"}
var e2eTracks = []string{"Product Viewed", "Product Added", "Order Completed"}

// newE2EGenerator returns a generator of the e2e load.
func newE2EGenerator(runID string, clients, batch, perProfile, identifiers int, now time.Time) *generator {
	g := &generator{runID: runID, batch: batch}
	for c := 0; c < clients; c++ {
		g.templates = append(g.templates, newE2ETemplate(runID, c, batch, perProfile, identifiers, now))
	}
	return g
}

func newE2ETemplate(runID string, client, batch, perProfile, identifiers int, now time.Time) *template {
	ts := now.UTC().Format(time.RFC3339Nano)
	prefix := idPrefix(runID, client)
	zero := fmt.Sprintf("%0*d", counterDigits, 0)
	ctx := `"context":{"library":{"name":"tandem-bench","version":"1"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) tandem-bench"}`
	var b bytes.Buffer
	b.WriteString(`{"batch":[`)
	for e := 0; e < batch; e++ {
		if e > 0 {
			b.WriteByte(',')
		}
		person, pos := e/perProfile, e%perProfile
		size := min(perProfile, batch-person*perProfile) // this person's events in the request
		anon := fmt.Sprintf("anon-%s%s-%0*d", prefix, zero, eventDigits, person)
		user := fmt.Sprintf("user-%s%s-%0*d", prefix, zero, eventDigits, person)
		email := fmt.Sprintf("%s%s-%0*d@example.com", prefix, zero, eventDigits, person)
		msg := fmt.Sprintf(`"messageId":"%s%s-%0*d","timestamp":%q`, prefix, zero, eventDigits, e, ts)
		switch {
		case identifiers == 1:
			fmt.Fprintf(&b, `{"type":"track","event":%q,"userId":%q,%s,"properties":{"orderId":"o-%d","revenue":%d.5,"currency":"EUR"},%s}`,
				e2eTracks[pos%len(e2eTracks)], user, msg, e, 10+e%90, ctx)
		case pos < size/2:
			page := e2ePages[pos%len(e2ePages)]
			fmt.Fprintf(&b, `{"type":"page","name":%q,"anonymousId":%q,%s,"properties":{"path":"/%d","title":%q},%s}`,
				page, anon, msg, pos, page, ctx)
		case pos == size/2:
			traits := `"plan":"pro"`
			if identifiers >= 3 {
				traits = fmt.Sprintf(`"email":%q,"plan":"pro"`, email)
			}
			fmt.Fprintf(&b, `{"type":"identify","anonymousId":%q,"userId":%q,%s,"traits":{%s},%s}`, anon, user, msg, traits, ctx)
		default:
			fmt.Fprintf(&b, `{"type":"track","event":%q,"anonymousId":%q,"userId":%q,%s,"properties":{"orderId":"o-%d","revenue":%d.5,"currency":"EUR"},%s}`,
				e2eTracks[pos%len(e2eTracks)], anon, user, msg, e, 10+e%90, ctx)
		}
	}
	fmt.Fprintf(&b, `],"sentAt":%q}`, ts)
	t := &template{patch: patchBuf{b: b.Bytes()}}
	t.patch.offs = counterOffsets(t.patch.b, prefix)
	return t
}
