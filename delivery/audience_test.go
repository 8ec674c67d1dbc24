package delivery

import (
	"testing"

	"tandem/audience"
	"tandem/event"
)

// TestForAudience: an audience's membership events go to the destinations
// the audience names and no others; other events are not concerned.
func TestForAudience(t *testing.T) {
	aud := &event.Event{SourceID: audience.SourceID, Type: "track", Name: audience.EventEntered,
		Raw: []byte(`{"type":"track","event":"Audience Entered","properties":{"audience":"loyal","destinations":["dst_a"]}}`)}
	if !forAudience("dst_a", aud) {
		t.Error("the audience's destination refused its event")
	}
	if forAudience("dst_b", aud) {
		t.Error("another destination got the audience's event")
	}
	other := &event.Event{SourceID: "src_web", Type: "track", Name: audience.EventEntered, Raw: []byte(`{"properties":{"destinations":[]}}`)}
	if !forAudience("dst_b", other) {
		t.Error("a collected event was held back")
	}
}
