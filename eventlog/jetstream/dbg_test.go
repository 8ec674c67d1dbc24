package jetstream

import (
	"fmt"
	"os"
	"testing"
	"time"

	"tandem/eventlog"
)

func TestDbgPhase1(t *testing.T) {
	if os.Getenv("DBG1") == "" {
		t.Skip()
	}
	fails := 0
	for iter := 0; iter < 40; iter++ {
		dir := t.TempDir()
		ctx := t.Context()
		l, err := OpenEmbedded(EmbeddedOptions{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			l.Append(ctx, []byte("x"))
		}
		c, _ := l.Consumer(ctx, "r")
		var got []eventlog.Message
		for len(got) < 10 {
			msgs, _ := c.Fetch(ctx, 10-len(got), time.Second)
			got = append(got, msgs...)
		}
		if err := c.Ack(ctx, got[:5]...); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l, _ = OpenEmbedded(EmbeddedOptions{Dir: dir})
		jc, _ := l.js.Consumer(ctx, l.name, "r")
		i, _ := jc.Info(ctx)
		if i.NumAckPending != 5 || i.NumPending != 0 {
			fails++
			fmt.Printf("iter %d: D=%+v A=%+v np=%d ap=%d rd=%d\n", iter, i.Delivered, i.AckFloor, i.NumPending, i.NumAckPending, i.NumRedelivered)
			b, _ := os.ReadFile(dir + "/jetstream/$G/streams/TANDEM_EVENTS/obs/r/o.dat")
			fmt.Printf("o.dat %d bytes\n", len(b))
			l.Close()
			time.Sleep(time.Second)
			l, _ = OpenEmbedded(EmbeddedOptions{Dir: dir})
			jc, _ := l.js.Consumer(ctx, l.name, "r")
			i, _ := jc.Info(ctx)
			fmt.Printf("third open: D=%+v A=%+v np=%d ap=%d rd=%d\n", i.Delivered, i.AckFloor, i.NumPending, i.NumAckPending, i.NumRedelivered)
		}
		l.Close()
	}
	if fails > 0 {
		t.Fatalf("%d fails", fails)
	}
}
