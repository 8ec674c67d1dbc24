package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"time"

	"tandem/delivery/guard"
	"tandem/governance"
)

// Type is a kind of destination (webhook, segment, nats). To add one:
// implement it, and list it where [New] builds the registry. A Type is
// stateless; [Type.Open] makes the [Sender] of one destination.
type Type interface {
	// Name is the type as the API names it ("webhook").
	Name() string
	// Check validates a destination's config and returns what to store:
	// cfg with defaults filled in, a secret left out of cfg taken from
	// prev (the stored config when it changes; nil on creation). Errors
	// are *governance.FieldError naming "config.<key>".
	Check(cfg, prev map[string]any, env Env) (map[string]any, error)
	// Secrets lists the config keys never returned by the API nor logged.
	Secrets() []string
	// Open returns the sender of a destination with config cfg (as Check
	// returned it).
	Open(cfg map[string]any, env Env) (Sender, error)
}

// Sender sends events to one destination.
type Sender interface {
	// Send delivers events, in order, at once (one request when the type
	// batches). It returns nil when the destination took them all, or an
	// error; a *[SendError] says whether trying again may help, other
	// errors (network, timeout) are retried.
	Send(ctx context.Context, events []Outgoing) error
	// MaxBatch is how many events one Send takes, 1 or more.
	MaxBatch() int
	// Concurrency is how many ordered lanes may send at once.
	Concurrency() int
	// Rate is the most Send calls per second, 0 for no limit.
	Rate() float64
}

// A Sender that holds connections may implement io.Closer: it is closed
// when its destination's delivery stops.

// Outgoing is one event as a destination receives it.
type Outgoing struct {
	MessageID string
	Body      json.RawMessage // the event's JSON after the destination's mapping
}

// SendError is a failed Send.
type SendError struct {
	Status     int           // the HTTP status, 0 if none
	Retry      bool          // whether trying again may succeed
	RetryAfter time.Duration // the destination asked to wait this long (429, 503), 0 if it did not say
	Msg        string
}

func (e *SendError) Error() string { return e.Msg }

// Env is what a Type may use: the SSRF guard and its HTTP client.
type Env struct {
	Guard *guard.Guard
	// Client returns an HTTP client through the guard with the given
	// per-request timeout.
	Client func(timeout time.Duration) *http.Client
}

// Registry holds the destination types of a node; it is the
// [governance.DestinationTypes] the governance store checks configs with.
type Registry struct {
	env   Env
	types map[string]Type
}

func newRegistry(env Env, types ...Type) *Registry {
	r := &Registry{env: env, types: map[string]Type{}}
	for _, t := range types {
		r.types[t.Name()] = t
	}
	return r
}

var _ governance.DestinationTypes = (*Registry)(nil)

// builtin are the destination types of every node.
func builtin() []Type { return []Type{webhook{}, segment{}, natsType{}} }

// TypeNames lists the destination types of every node, sorted (for
// clients that check a type before they send it, such as tandem apply).
func TypeNames() []string { return newRegistry(Env{}, builtin()...).Names() }

// CheckConfig checks a config of the type typ as a node would on
// creation, but for the addresses the SSRF guard allows (a node checks
// those against its --destination-allow), and returns it completed and
// normalised.
func CheckConfig(typ string, cfg map[string]any) (map[string]any, error) {
	return newRegistry(Env{}, builtin()...).CheckConfig(typ, cfg, nil)
}

// SecretKeys lists the config keys of the type typ that are secrets,
// never shown by the API.
func SecretKeys(typ string) []string { return newRegistry(Env{}, builtin()...).Secrets(typ) }

// Names lists the types, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.types))
	for n := range r.types {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// CheckConfig implements [governance.DestinationTypes].
func (r *Registry) CheckConfig(typ string, cfg, prev map[string]any) (map[string]any, error) {
	t, ok := r.types[typ]
	if !ok {
		return nil, &governance.FieldError{Field: "type", Message: fmt.Sprintf("unknown destination type %q; known: %s", typ, strings.Join(r.Names(), ", "))}
	}
	return t.Check(cfg, prev, r.env)
}

// Secrets implements [governance.DestinationTypes].
func (r *Registry) Secrets(typ string) []string {
	if t, ok := r.types[typ]; ok {
		return t.Secrets()
	}
	return nil
}

func (r *Registry) open(d governance.Destination) (Sender, error) {
	t, ok := r.types[d.Type]
	if !ok {
		return nil, fmt.Errorf("unknown destination type %q", d.Type)
	}
	return t.Open(d.Config, r.env)
}

// Config helpers for types.

func fieldErr(key, msg string) error {
	return &governance.FieldError{Field: "config." + key, Message: msg}
}

// onlyKeys refuses keys of cfg not in allowed.
func onlyKeys(cfg map[string]any, allowed ...string) error {
	for k := range cfg {
		found := false
		for _, a := range allowed {
			found = found || a == k
		}
		if !found {
			return fieldErr(k, "unknown config key; known: "+strings.Join(allowed, ", "))
		}
	}
	return nil
}

// intKey reads an optional whole number between lo and hi, def when absent.
func intKey(cfg map[string]any, key string, def, lo, hi int) (int, error) {
	v, ok := cfg[key]
	if !ok || v == nil {
		cfg[key] = def
		return def, nil
	}
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case int:
		f = float64(n)
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, fieldErr(key, "must be a number")
		}
	default:
		return 0, fieldErr(key, "must be a number")
	}
	if f != float64(int(f)) || int(f) < lo || int(f) > hi {
		return 0, fieldErr(key, fmt.Sprintf("must be a whole number from %d to %d", lo, hi))
	}
	cfg[key] = int(f)
	return int(f), nil
}

func floatKey(cfg map[string]any, key string, lo, hi float64) (float64, error) {
	v, ok := cfg[key]
	if !ok || v == nil {
		cfg[key] = 0
		return 0, nil
	}
	f, ok := v.(float64)
	if i, isInt := v.(int); isInt {
		f, ok = float64(i), true
	}
	if !ok || f < lo || f > hi {
		return 0, fieldErr(key, fmt.Sprintf("must be a number from %v to %v", lo, hi))
	}
	return f, nil
}

func parseIP(host string) (netip.Addr, error) { return netip.ParseAddr(host) }

// urlKey reads a required http(s) URL and checks it against the guard:
// its form always, its address when it is a literal IP.
func urlKey(cfg map[string]any, key string, g *guard.Guard) (*url.URL, error) {
	s, ok := cfg[key].(string)
	if !ok || strings.TrimSpace(s) == "" {
		return nil, fieldErr(key, "is required: an http or https URL")
	}
	if len(s) > 2048 {
		return nil, fieldErr(key, "is longer than 2048 characters")
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fieldErr(key, "is not a URL")
	}
	if err := guard.CheckURL(u); err != nil {
		return nil, fieldErr(key, strings.TrimPrefix(err.Error(), "guard: "))
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil && g != nil {
		if err := g.Check(ip); err != nil {
			return nil, fieldErr(key, strings.TrimPrefix(err.Error(), "guard: "))
		}
	}
	cfg[key] = u.String()
	return u, nil
}

// secretKey reads an optional secret string, kept from prev when absent.
func secretKey(cfg, prev map[string]any, key string) (string, error) {
	v, ok := cfg[key]
	if !ok && prev != nil {
		v, ok = prev[key]
		if ok {
			cfg[key] = v
		}
	}
	if !ok || v == nil {
		delete(cfg, key)
		return "", nil
	}
	s, isStr := v.(string)
	if !isStr || len(s) > 1024 {
		return "", fieldErr(key, "must be a string of at most 1024 bytes")
	}
	if s == governance.SecretSet {
		// Sent back as shown by GET: keep the stored one.
		if prev == nil {
			return "", fieldErr(key, "is the placeholder shown for a set secret, not a secret")
		}
		cfg[key] = prev[key]
		s, _ = prev[key].(string)
	}
	return s, nil
}
