package audit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"tandem/audit"
	"tandem/audit/audittest"
	"tandem/statestore"
	"tandem/statestore/postgres"
	"tandem/statestore/statetest"
	"tandem/testserver"
)

// TestMain stops the test servers TestLog started.
func TestMain(m *testing.M) { testserver.Main(m) }

// TestLog runs the package's suite on every state store backend.
func TestLog(t *testing.T) {
	statetest.Each(t, audittest.Run)
}

// TestSeveralNodesPostgres: nodes with their own connection pools on one
// PostgreSQL database append at once, and the chain stays one line.
func TestSeveralNodesPostgres(t *testing.T) {
	url := testserver.Postgres(t)
	ctx := context.Background()
	const nodes, writers, each = 3, 4, 20
	logs := make([]*audit.Log, nodes)
	var dbs []*statestore.DB
	for i := range nodes {
		db, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
		logs[i] = audit.New(db)
	}
	// The nodes start (and migrate) together.
	var wg sync.WaitGroup
	for _, db := range dbs {
		wg.Go(func() {
			if err := db.Migrate(ctx, audit.Migrations()...); err != nil {
				t.Errorf("Migrate: %v", err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for n, l := range logs {
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					if _, err := l.Append(ctx, audit.Record{Actor: fmt.Sprintf("usr_%d_%d", n, w), Action: "profile.read", Resource: "profile/p"}); err != nil {
						t.Errorf("node %d writer %d append %d: %v", n, w, i, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	audittest.MustVerify(t, logs[0], nodes*writers*each)
}

func TestHashCoversEveryField(t *testing.T) {
	e := audit.Entry{Seq: 7, Actor: "usr_a", Action: "a", Resource: "r", Subject: "s", ChangeRequest: "c",
		Before: []byte(`{"x":1}`), After: []byte(`null`), PrevHash: audit.Genesis}
	base := audit.Hash(e)
	for name, change := range map[string]func(e *audit.Entry){
		"seq":           func(e *audit.Entry) { e.Seq++ },
		"at":            func(e *audit.Entry) { e.At = e.At.Add(1) },
		"actor":         func(e *audit.Entry) { e.Actor += "x" },
		"action":        func(e *audit.Entry) { e.Action += "x" },
		"resource":      func(e *audit.Entry) { e.Resource += "x" },
		"subject":       func(e *audit.Entry) { e.Subject += "x" },
		"changeRequest": func(e *audit.Entry) { e.ChangeRequest += "x" },
		"before":        func(e *audit.Entry) { e.Before = []byte(`{"x":2}`) },
		"after":         func(e *audit.Entry) { e.After = []byte(`{}`) },
		"prevHash":      func(e *audit.Entry) { e.PrevHash = "1" + e.PrevHash[1:] },
		// Moving text between neighbouring fields changes the hash too.
		"shifted": func(e *audit.Entry) { e.Actor, e.Action = "usr_aa", "" },
	} {
		c := e
		change(&c)
		if audit.Hash(c) == base {
			t.Errorf("changing %s leaves the hash as it was", name)
		}
	}
	// Invalid UTF-8 is hashed as bytes: two different invalid strings,
	// which JSON would both turn into U+FFFD, hash differently.
	a, b := e, e
	a.Actor, b.Actor = "usr_\xff", "usr_\xfe"
	if audit.Hash(a) == audit.Hash(b) {
		t.Error("different invalid UTF-8 hashes the same")
	}
	c := e
	c.Hash = "anything"
	if audit.Hash(c) != base {
		t.Error("the hash depends on the Hash field")
	}
}
