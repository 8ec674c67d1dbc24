package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestWholeMatchesReplay checks partition's shortcut: whenever whole
// answers, its one profile is what the replay makes of the same links,
// under limits that the links' identifiers may or may not break.
func TestWholeMatchesReplay(t *testing.T) {
	rules := DefaultRules()
	rules.Types[0].Limit = 2 // user_id: two, so that sets hit and miss the limit
	c, err := compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	pid := func(anchor string) string { return "prf-" + anchor }
	answered := 0
	rapid.Check(t, func(rt *rapid.T) {
		types := []string{UserID, Email, AnonymousID, CRMID}
		n := rapid.IntRange(1, 6).Draw(rt, "links")
		var links []link
		var prev []string
		for i := range n {
			var ids []string
			if i > 0 {
				// Connected: each link shares an identifier with the one before.
				ids = append(ids, prev[rapid.IntRange(0, len(prev)-1).Draw(rt, "shared")])
			}
			for range rapid.IntRange(1, 3).Draw(rt, "ids") {
				typ := rapid.SampledFrom(types).Draw(rt, "type")
				ids = append(ids, Ident(typ, fmt.Sprint(rapid.IntRange(0, 3).Draw(rt, "value"))))
			}
			ids = c.sortIdents(ids)
			prev = ids
			links = append(links, link{ids: ids, at: time.Unix(int64(rapid.IntRange(0, 5).Draw(rt, "at")), 0), source: "s", msg: fmt.Sprint("m", i)})
		}
		// The batch's sets are distinct.
		links = slices.CompactFunc(links, func(a, b link) bool { return slices.Equal(a.ids, b.ids) })
		got, ok := c.whole(links, pid)
		if !ok {
			return
		}
		answered++
		want := c.partition(links, nil, pid)
		if len(want.profiles) != 1 || len(got.profiles) != 1 {
			rt.Fatalf("whole: %d profiles, replay: %d", len(got.profiles), len(want.profiles))
		}
		if got.profiles[0].id != want.profiles[0].id || !slices.Equal(slices.Sorted(slices.Values(got.profiles[0].idents)), slices.Sorted(slices.Values(want.profiles[0].idents))) {
			rt.Fatalf("whole: %s %v, replay: %s %v", got.profiles[0].id, got.profiles[0].idents, want.profiles[0].id, want.profiles[0].idents)
		}
		for id, p := range want.of {
			if q := got.profileOf(id); q == nil || q.id != p.id {
				rt.Fatalf("%s: whole puts it in %v, replay in %s", id, q, p.id)
			}
		}
	})
	if answered == 0 {
		t.Fatal("whole never answered: the test checked nothing")
	}
}

// TestPidIsKeyedHash checks that profile ids stay what they were (the
// first 12 bytes of HMAC-SHA256 of the anchor, in hex), also from a
// reused HMAC: every node, old or new, must give a profile the same id.
func TestPidIsKeyedHash(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	s := &Store{secret: key}
	s.macs.New = func() any { return hmac.New(sha256.New, s.secret) }
	for range 3 {
		for _, anchor := range []string{"anonymous_id:a1", "email:x@example.com", "user_id:" + strings.Repeat("u", 300)} {
			m := hmac.New(sha256.New, key)
			m.Write([]byte(anchor))
			want := "prf_" + hex.EncodeToString(m.Sum(nil)[:12])
			if got := s.pid(anchor); got != want {
				t.Fatalf("pid(%q) = %s, want %s", anchor, got, want)
			}
		}
	}
}
