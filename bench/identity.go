package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"tandem/event"
	"tandem/eventstore/duckdb"
	"tandem/identity"
	"tandem/statestore/sqlite"
)

const identityUsage = `Usage: tandem bench identity [flags]

Measures identity resolution with the embedded stores (SQLite state store,
DuckDB event store), in this process, on a generated identity load: a
moving population of people, each with a user id, an e-mail address, a
phone number and several devices (anonymous ids); about 80% of events carry
one identifier (page views, tracks), about 20% a second one that links
(logins, e-mail identifies, call-centre contacts matched by phone, alias
chains, some 30 long); event times jitter up to an hour, so events arrive
out of order. Phases, each on a fresh temporary data directory:

  store     baseline: the event store appends the batches, no identity
  identity  the pipeline's work with identity: resolve each batch in the
            state store, link profile keys in the event store, append

It reports events/s for each, identity's own share, and the Go heap and the
process's resident memory after each tenth of the events, to show whether
memory grows with the events processed.

Flags:
`

// IdentityReport is what `tandem bench identity` measured.
type IdentityReport struct {
	Command     string           `json:"command"`
	Events      int              `json:"events"`
	PersonEvery int              `json:"personEvery"`
	Batch       int              `json:"batch"`
	GOMAXPROCS  int              `json:"gomaxprocs"`
	NumCPU      int              `json:"numCpu"`
	Go          string           `json:"go"`
	Phases      []IdentityPhase  `json:"phases"`
	Load        identityLoadInfo `json:"load"`
}

// IdentityPhase is one phase's figures.
type IdentityPhase struct {
	Name            string         `json:"name"`
	Events          int            `json:"events"`
	Seconds         float64        `json:"seconds"`
	EventsPerSec    float64        `json:"eventsPerSec"`
	ResolveSeconds  float64        `json:"resolveSeconds,omitempty"`
	ResolvedPerSec  float64        `json:"resolvedPerSec,omitempty"` // events / time spent in identity alone
	Memory          []memorySample `json:"memory"`
	Profiles        int64          `json:"profiles,omitempty"`
	IdentifiersSeen int64          `json:"identifiers,omitempty"`
}

type memorySample struct {
	Events  int     `json:"events"`
	HeapMiB float64 `json:"heapMiB"`
	RSSMiB  float64 `json:"rssMiB"`
}

type identityLoadInfo struct {
	Linking     int `json:"eventsWithSecondIdentifier"`
	AliasEvents int `json:"aliasEvents"`
}

func identityMain(args []string, stdout, stderr io.Writer) int {
	const cmd = "tandem bench identity"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	n := fs.Int("events", 2_000_000, "events to generate")
	batch := fs.Int("batch", 20000, "events per batch (the pipeline's batch size)")
	jsonOut := fs.Bool("json", false, "print the report as one JSON object")
	skipBase := fs.Bool("skip-baseline", false, "skip the store-only baseline")
	every := fs.Int("person-every", 25, "a new person arrives every this many events (each person is active for the next 20,000 arrivals)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if code, ok := parseFlags(fs, args, identityUsage, stdout, stderr); !ok {
		return code
	}
	if *n < 1 {
		return usageErr(stderr, cmd, "--events", "must be positive")
	}
	if *every < 1 {
		return usageErr(stderr, cmd, "--person-every", "must be positive")
	}
	if *batch < 1 {
		return usageErr(stderr, cmd, "--batch", "must be positive")
	}
	rep := IdentityReport{Command: cmd, Events: *n, PersonEvery: *every, Batch: *batch, GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(),
		Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	ctx := context.Background()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return usageErr(stderr, cmd, "--cpuprofile", err.Error())
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return usageErr(stderr, cmd, "--cpuprofile", err.Error())
		}
		defer pprof.StopCPUProfile()
	}
	if !*skipBase {
		ph, _, err := runIdentityPhase(ctx, "store", *n, *batch, *every, false, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "%s: store phase: %v\n", cmd, err)
			return 1
		}
		rep.Phases = append(rep.Phases, ph)
	}
	ph, info, err := runIdentityPhase(ctx, "identity", *n, *batch, *every, true, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: identity phase: %v\n", cmd, err)
		return 1
	}
	rep.Phases = append(rep.Phases, ph)
	rep.Load = info
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return 1
		}
		return 0
	}
	fmt.Fprintf(stdout, "%s: %d events in batches of %d, GOMAXPROCS %d, %s\n", cmd, rep.Events, rep.Batch, rep.GOMAXPROCS, rep.Go)
	fmt.Fprintf(stdout, "load: %d events (%.1f%%) carry a second identifier, %d alias events\n", info.Linking, 100*float64(info.Linking)/float64(rep.Events), info.AliasEvents)
	for _, p := range rep.Phases {
		fmt.Fprintf(stdout, "\nphase %s: %.0f events/s (%.1f s)\n", p.Name, p.EventsPerSec, p.Seconds)
		if p.ResolvedPerSec > 0 {
			fmt.Fprintf(stdout, "  identity alone: %.0f events/s resolved (%.1f s of the phase); %d identifiers, %d profiles\n", p.ResolvedPerSec, p.ResolveSeconds, p.IdentifiersSeen, p.Profiles)
		}
		fmt.Fprintf(stdout, "  memory after   events    Go heap MiB    RSS MiB\n")
		for _, m := range p.Memory {
			fmt.Fprintf(stdout, "             %10d   %12.1f   %8.1f\n", m.Events, m.HeapMiB, m.RSSMiB)
		}
	}
	if len(rep.Phases) == 2 && rep.Phases[0].EventsPerSec > 0 {
		fmt.Fprintf(stdout, "\nidentity phase / store baseline: %.2f\n", rep.Phases[1].EventsPerSec/rep.Phases[0].EventsPerSec)
	}
	return 0
}

func runIdentityPhase(ctx context.Context, name string, n, batch, every int, withIdentity bool, progress io.Writer) (IdentityPhase, identityLoadInfo, error) {
	ph := IdentityPhase{Name: name, Events: n}
	dir, err := tempDir("identity-" + name)
	if err != nil {
		return ph, identityLoadInfo{}, err
	}
	defer os.RemoveAll(dir)
	events, err := duckdb.Open(filepath.Join(dir, "events.duckdb"))
	if err != nil {
		return ph, identityLoadInfo{}, err
	}
	defer events.Close()
	var ids *identity.Store
	count := func() {}
	if withIdentity {
		db, err := sqlite.Open(filepath.Join(dir, "state.db"))
		if err != nil {
			return ph, identityLoadInfo{}, err
		}
		defer db.Close()
		if err := db.Migrate(ctx, identity.Migrations()...); err != nil {
			return ph, identityLoadInfo{}, err
		}
		if ids, err = identity.NewStore(ctx, db, identity.Options{Rules: identity.DefaultRules(), Links: events}); err != nil {
			return ph, identityLoadInfo{}, err
		}
		defer func() {
			_ = db.Close()
		}()
		count = func() {
			if parts, err := ids.Partition(ctx); err == nil {
				ph.Profiles = int64(len(parts))
			}
			_ = db.QueryRow(ctx, `SELECT COUNT(*) FROM identity_idents`).Scan(&ph.IdentifiersSeen)
		}
	}
	g := newIdentityLoad(every)
	buf := make([]event.Event, 0, batch)
	start := time.Now()
	var resolve time.Duration
	next := n / 10
	for done := 0; done < n; {
		buf = buf[:0]
		for len(buf) < batch && done+len(buf) < n {
			buf = append(buf, g.next())
		}
		if ids != nil {
			t := time.Now()
			if err := ids.Resolve(ctx, buf); err != nil {
				return ph, g.info, err
			}
			resolve += time.Since(t)
		}
		if _, err := events.Append(ctx, buf); err != nil {
			return ph, g.info, err
		}
		done += len(buf)
		if done >= next || done == n {
			ph.Memory = append(ph.Memory, sampleMemory(done))
			fmt.Fprintf(progress, "%s: %d events, %.0f events/s\n", name, done, float64(done)/time.Since(start).Seconds())
			next += n / 10
		}
	}
	ph.Seconds = time.Since(start).Seconds()
	ph.EventsPerSec = float64(n) / ph.Seconds
	if ids != nil {
		ph.ResolveSeconds = resolve.Seconds()
		ph.ResolvedPerSec = float64(n) / resolve.Seconds()
	}
	count()
	return ph, g.info, nil
}

func sampleMemory(events int) memorySample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memorySample{Events: events, HeapMiB: float64(ms.HeapInuse) / (1 << 20)}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				s.RSSMiB = kb / 1024
			}
		}
	}
	return s
}

// identityLoad generates events procedurally, keeping nothing per event or
// per person: memory stays flat however many it makes. A person arrives
// every `every` events and stays active for a window of 20,000 arrivals.
type identityLoad struct {
	i     int
	every int
	rng   *rand.Rand
	t0    time.Time
	info  identityLoadInfo
}

func newIdentityLoad(every int) *identityLoad {
	return &identityLoad{every: every, rng: rand.New(rand.NewPCG(1, 2)), t0: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

const activeWindow = 20000

func (g *identityLoad) next() event.Event {
	g.i++
	base := g.i / g.every
	p := base + g.rng.IntN(activeWindow)
	e := event.Event{SourceID: "bench", MessageID: "m" + strconv.Itoa(g.i)}
	// Event time: ~10 ms apart, jittered up to an hour back.
	e.Timestamp = g.t0.Add(time.Duration(g.i)*10*time.Millisecond - time.Duration(g.rng.Int64N(int64(time.Hour))))
	e.ReceivedAt = e.Timestamp
	devices := 3
	if p%50 == 0 {
		devices = 30 // long alias chains
	}
	dev := g.rng.IntN(devices)
	anon := fmt.Sprintf("a%d-%d", p, dev)
	user := "u" + strconv.Itoa(p)
	r := g.rng.IntN(100)
	var extra string
	switch {
	case r < 60:
		e.Type, e.Name, e.AnonymousID = "track", "Viewed Page", anon
	case r < 80:
		e.Type, e.Name, e.UserID = "track", "Clicked", user
	case r < 92:
		e.Type, e.UserID, e.AnonymousID = "identify", user, anon // login
		g.info.Linking++
	case r < 96:
		e.Type, e.UserID = "identify", user
		extra = fmt.Sprintf(`,"traits":{"email":"person%d@example.org","plan":"p%d"}`, p, g.rng.IntN(3))
		g.info.Linking++
	case r < 98:
		// A call-centre contact: its own anonymous id, matched by phone.
		e.Type, e.Name, e.AnonymousID = "track", "Call Logged", "call-"+strconv.Itoa(g.i)
		extra = fmt.Sprintf(`,"context":{"traits":{"phone":"+44 20 %04d %04d"}}`, p/10000%10000, p%10000)
		g.info.Linking++
	default:
		// Alias the device to the person's previous one: chains.
		e.Type, e.AnonymousID = "alias", anon
		e.PreviousID = fmt.Sprintf("a%d-%d", p, (dev+devices-1)%devices)
		g.info.Linking++
		g.info.AliasEvents++
	}
	raw := fmt.Sprintf(`{"type":%q,"messageId":%q`, e.Type, e.MessageID)
	if e.UserID != "" {
		raw += fmt.Sprintf(`,"userId":%q`, e.UserID)
	}
	if e.AnonymousID != "" {
		raw += fmt.Sprintf(`,"anonymousId":%q`, e.AnonymousID)
	}
	if e.Name != "" {
		raw += fmt.Sprintf(`,"event":%q`, e.Name)
	}
	if e.PreviousID != "" {
		raw += fmt.Sprintf(`,"previousId":%q`, e.PreviousID)
	}
	e.Raw = []byte(raw + extra + `}`)
	return e
}
