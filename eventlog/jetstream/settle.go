package jetstream

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"time"
)

// Why an embedded log waits before it stops its server
//
// The server keeps a consumer's state (ack floor, records delivered and not
// acknowledged) in memory and writes it to the consumer's state file from a
// flusher goroutine, at most every 100ms. When the server stops, a consumer
// writes its state itself only if it is "dirty"; but the flusher clears that
// flag when it starts writing a state it may have encoded before the latest
// acks, and a flusher waiting out its 100ms is then stopped without writing.
// A Close right after some acks can so leave the state from before them on
// disk, and the acknowledged records are delivered again after the restart.
//
// So Close, after the last ack and release, waits until each consumer's
// state file holds the state the server reports for it, then stops the
// server. Reading the file relies on the server's internal format (version
// 2 of its consumer state encoding); when the file cannot be read that way,
// Close waits ackSettle instead, which is enough unless the disk is very
// slow.

const (
	// settleTimeout bounds the wait for state files to catch up.
	settleTimeout = 5 * time.Second
	// consumerStateMagic and consumerStateVersion start the server's
	// consumer state file.
	consumerStateMagic   = 22
	consumerStateVersion = 2
	// globalAccount is the account an embedded server without accounts
	// keeps its streams in.
	globalAccount = "$G"
)

// diskConsumerState is what settle reads of a consumer's state file.
type diskConsumerState struct {
	ackFloor  uint64           // stream sequence
	delivered uint64           // stream sequence
	pending   map[uint64]int64 // stream sequence → unix second of its last delivery
}

// readConsumerState reads a consumer's state file; ok is false when it is
// missing or not in the format this code knows.
func readConsumerState(path string) (st diskConsumerState, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 2 || b[0] != consumerStateMagic || b[1] != consumerStateVersion {
		return st, false
	}
	b = b[2:]
	bad := false
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	uv() // ack floor, consumer sequence
	st.ackFloor = uv()
	uv() // delivered, consumer sequence
	st.delivered = uv()
	n := uv()
	if bad || n > uint64(len(b)) {
		return st, false
	}
	st.pending = make(map[uint64]int64, n)
	if n > 0 {
		base := sv()
		for range n {
			seq := uv() + st.ackFloor
			uv() // consumer sequence
			st.pending[seq] = base - sv()
		}
	}
	return st, !bad
}

// settle waits until the state file of each consumer opened on this log
// holds the state the server reports for it, with the records in released
// (by consumer name) marked for redelivery, or settleTimeout. It needs the
// connection and the server up.
func (l *Log) settle(released map[string][]uint64, releasedAt time.Time) {
	l.cmu.Lock()
	names := make([]string, 0, len(l.names))
	for n := range l.names {
		names = append(names, n)
	}
	l.cmu.Unlock()
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	for _, name := range names {
		jc, err := l.js.Consumer(ctx, l.name, name)
		if err != nil {
			l.settleByTime()
			return
		}
		info, err := jc.Info(ctx)
		if err != nil {
			l.settleByTime()
			return
		}
		path := l.consumerStatePath(name)
		for {
			st, ok := readConsumerState(path)
			if !ok {
				l.settleByTime()
				return
			}
			if st.ackFloor == info.AckFloor.Stream && st.delivered == info.Delivered.Stream &&
				len(st.pending) == info.NumAckPending && marked(st, released[name], releasedAt) {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// consumerStatePath is where the embedded server keeps the named
// consumer's state.
func (l *Log) consumerStatePath(name string) string {
	return filepath.Join(l.srv.JetStreamConfig().StoreDir, globalAccount, "streams", l.name, "obs", name, "o.dat")
}

// marked reports whether every released record still pending in st has the
// delivery time a release gives it: an ack wait before the release.
func marked(st diskConsumerState, released []uint64, at time.Time) bool {
	limit := at.Add(-ackWait / 2).Unix()
	for _, seq := range released {
		if ts, ok := st.pending[seq]; ok && ts > limit {
			return false
		}
	}
	return true
}

// settleByTime waits until ackSettle has passed since the last ack or
// release.
func (l *Log) settleByTime() {
	if since := time.Duration(time.Now().UnixNano() - l.lastAck.Load()); since < ackSettle {
		time.Sleep(ackSettle - since)
	}
}
