// Package config is tandem's server configuration. [Load] starts from
// [Default], then applies the YAML file given by --config, then TANDEM_*
// environment variables, then flags, each overriding the one before, and
// finally [Config.Validate] checks the result.
//
// Every flag is declared once, in flags.go, bound to its field of [Config].
// Its environment variable (TANDEM_ and the name in upper snake case) and
// its file key (the name in snake case) go through the same
// [flag.Value.Set], so a value means the same wherever it is written, and a
// bad one is a [UsageError] naming where it came from: the flag
// (--log-max-bytes), the variable (TANDEM_LOG_MAX_BYTES) or the file and
// line (tandem.yaml:3: log_max_bytes).
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"tandem/analytics"
	"tandem/attribution"
	"tandem/identity"
	"tandem/policy"
	"tandem/privacy"
)

// Config is everything `tandem serve` needs.
type Config struct {
	DataDir string `yaml:"data_dir"`
	Addr    string `yaml:"addr"`

	// Backends, chosen by URL. Empty means the embedded default under DataDir.
	Log    string `yaml:"log"`    // nats://host:port[,host:port…]
	State  string `yaml:"state"`  // postgres://…
	Events string `yaml:"events"` // clickhouse://…

	// EventsMemoryLimit caps the memory of the embedded event store's
	// DuckDB (its buffer pool: cached column data and query state, which
	// spills to disk beyond it); 0 leaves DuckDB's default, 80% of RAM.
	// The node gives DuckDB this less what the dedup filter holds beyond
	// 32 MiB, at least 64 MiB (server/eventsmem.go).
	EventsMemoryLimit int64 `yaml:"events_memory_limit"`

	LogSync     string        `yaml:"log_sync"`      // only "always": acknowledge after fsync
	LogMaxBytes int64         `yaml:"log_max_bytes"` // 0: no limit but the disk
	LogMaxAge   time.Duration `yaml:"log_max_age"`   // how long processed records stay in the log

	// External log (--log nats://…) only.
	LogReplicas int           `yaml:"log_replicas"` // stream replicas; 0: 3 if Log names 3+ servers, else 1
	LogAckWait  time.Duration `yaml:"log_ack_wait"` // how long records a dead node held wait for another

	SourceRateLimit float64 `yaml:"source_rate_limit"` // events per second per source; 0 disables
	SourceBurst     int     `yaml:"source_burst"`      // events

	DestinationAllow []string `yaml:"destination_allow"` // CIDRs destinations may reach despite the SSRF guard

	// PublicURL is the address browsers and SDKs reach this node at (used in
	// the SDK settings documents); empty means the request's own host.
	PublicURL string `yaml:"public_url"`
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed when
	// the server sets context.ip.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// Overload bounds: collection answers 503 with Retry-After beyond them.
	MaxInflight int   `yaml:"max_inflight"`    // collection requests being served at once
	QueueBytes  int64 `yaml:"log_queue_bytes"` // bytes waiting for the event log
	// MaxPipelineLag: when the oldest unprocessed event has waited longer,
	// collection answers 503 overloaded; 0 keeps accepting (the log is
	// durable).
	MaxPipelineLag time.Duration `yaml:"max_pipeline_lag"`

	Pipeline bool `yaml:"pipeline"` // run the processing pipeline on this node
	// ReplayLast: at start, the pipeline processes the event log's
	// records of this last stretch again (a one-off recovery after an
	// event store lost acknowledged writes); 0: none.
	ReplayLast time.Duration `yaml:"replay_last"`

	// Journey is the lifecycle the journey analytics report on.
	Journey Journey `yaml:"journey"`

	// Attribution is the channel taxonomy's extensions, the tool rules
	// and the models' defaults (see docs/attribution.md); only the config
	// file sets it.
	Attribution attribution.Config `yaml:"attribution"`

	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	LogLevel        string        `yaml:"log_level"` // debug, info, warn, error

	// Identity are the identity resolution rules (see docs/identity.md);
	// only the config file sets them.
	Identity identity.Rules `yaml:"identity"`

	// Consent is the consent configuration: per-purpose defaults and the
	// purposes Sec-GPC refuses (see docs/privacy.md); only the config file
	// sets it.
	Consent privacy.Config `yaml:"consent"`

	// Policy is the decision rights: who proposes, approves and is
	// informed of each kind of change (see docs/governance.md); only the
	// config file sets it.
	Policy policy.Config `yaml:"policy"`
	// Retention is the maximum age of stored data per source, data
	// category or by default, and of the consent history (see
	// docs/privacy.md); only the config file sets it.
	Retention privacy.Retention `yaml:"retention"`

	// Privacy tags fields with data categories and names the data
	// subjects of the records of processing (see docs/privacy.md); only
	// the config file sets it.
	Privacy privacy.Settings `yaml:"privacy"`

	File string `yaml:"-"` // the --config file, if any
}

// Journey configures the lifecycle: stages in order, each reached by any of
// its events and owned by a department.
type Journey struct {
	Stages []analytics.Stage `yaml:"stages"`
}

// DefaultStages is the lifecycle used when the configuration names none.
func DefaultStages() []analytics.Stage {
	return []analytics.Stage{
		{Name: "awareness", Department: "marketing", Events: []string{"Ad Clicked", "Campaign Clicked", "Email Opened"}},
		{Name: "consideration", Department: "marketing", Events: []string{"Product Viewed", "Signed Up", "Demo Requested"}},
		{Name: "purchase", Department: "sales", Events: []string{"Order Completed"}},
		{Name: "delivery", Department: "operations", Events: []string{"Order Shipped", "Order Delivered"}},
		{Name: "service", Department: "service", Events: []string{"Ticket Opened", "Ticket Resolved"}},
		{Name: "loyalty", Department: "marketing", Events: []string{"Order Repeated", "Referral Sent", "Review Submitted"}},
	}
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		DataDir:         "./tandem-data",
		Addr:            "127.0.0.1:8080",
		LogSync:         "always",
		LogMaxAge:       7 * 24 * time.Hour,
		LogAckWait:      30 * time.Second,
		SourceRateLimit: 100000,
		SourceBurst:     200000,
		MaxInflight:     4096,
		QueueBytes:      256 << 20,
		Pipeline:        true,

		EventsMemoryLimit: 128 << 20,
		ShutdownTimeout:   30 * time.Second,
		LogLevel:          "info",
		Journey:           Journey{Stages: DefaultStages()},
		Attribution:       attribution.DefaultConfig(),
		Identity:          identity.DefaultRules(),
		Consent:           privacy.DefaultConfig(),
		Policy:            policy.DefaultConfig(),
	}
}

// UsageError is a bad flag, variable or key; `serve` exits 2 with it.
type UsageError struct {
	// Key names the value at fault where the user wrote it: a flag
	// (--addr), a variable (TANDEM_ADDR), or a file, line and key
	// (tandem.yaml:3: addr). [Config.Validate] alone, not knowing where a
	// value came from, names the file key (addr, journey.stages[1].name).
	Key     string
	Message string
}

func (e *UsageError) Error() string { return e.Key + ": " + e.Message }

// ErrHelp is returned when -h or --help was asked for; usage has been printed.
var ErrHelp = flag.ErrHelp

// Load builds the configuration for `tandem serve` from args (without the
// subcommand), the environment lookup getenv (an empty value counts as
// unset), and the --config file. --help writes the usage to usage and
// returns [ErrHelp]; every other error is a *[UsageError].
func Load(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	// The command line alone first: it may name the file, and a bad flag
	// is reported before anything is read.
	cmdline := Default()
	cfs := cmdline.flagSet()
	if err := parseArgs(cfs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(usage, cfs)
			return Default(), ErrHelp
		}
		return Default(), err
	}

	c := Default()
	fs := c.flagSet()
	from := map[string]string{} // flag name → where its value was written
	file, fileFrom := cmdline.File, "--config"
	if file == "" {
		file, fileFrom = getenv(envVar("config")), envVar("config")
	}
	var doc *yaml.Node
	if file != "" {
		var err error
		if doc, err = c.loadFile(fs, file, fileFrom, from); err != nil {
			return c, err
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := envVar(f.Name)
		if val := getenv(name); val != "" && err == nil {
			if msg := set(fs, f.Name, val); msg != "" {
				err = &UsageError{Key: name, Message: msg}
			}
			from[f.Name] = name
		}
	})
	if err != nil {
		return c, err
	}
	// Parsed once already, so this cannot fail.
	if err := parseArgs(fs, args); err != nil {
		return c, err
	}
	cfs.Visit(func(f *flag.Flag) { from[f.Name] = "--" + f.Name })

	if err := c.Validate(); err != nil {
		var ue *UsageError
		if errors.As(err, &ue) {
			ue.Key = where(ue.Key, from, file, doc)
		}
		return c, err
	}
	return c, nil
}

// envVar is the environment variable of a flag: TANDEM_LOG_MAX_BYTES for
// log-max-bytes.
func envVar(flagName string) string {
	return "TANDEM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// fileKey is the config file key of a flag: log_max_bytes for log-max-bytes.
func fileKey(flagName string) string { return strings.ReplaceAll(flagName, "-", "_") }

// where turns a key of [Config.Validate] (log_sync, journey.stages[1].name)
// into the place the user wrote the value: the flag, the variable, or the
// file and line.
func where(key string, from map[string]string, file string, doc *yaml.Node) string {
	top, _, _ := strings.Cut(key, ".")
	top, _, _ = strings.Cut(top, "[")
	if w, ok := from[strings.ReplaceAll(top, "_", "-")]; ok && !strings.Contains(top, "-") {
		return w
	}
	if doc != nil {
		if line := lineOf(doc, key); line > 0 {
			return fmt.Sprintf("%s:%d: %s", file, line, key)
		}
	}
	return key
}

// Validate checks the configuration, naming the file key at fault.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return &UsageError{Key: "data_dir", Message: "must not be empty"}
	}
	if c.EventsMemoryLimit != 0 && c.EventsMemoryLimit < 32<<20 {
		return &UsageError{Key: "events_memory_limit", Message: "want 0 (DuckDB's default, 80% of RAM) or at least 32MiB"}
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		msg := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			msg = ae.Err
		}
		return &UsageError{Key: "addr", Message: fmt.Sprintf("%q is not HOST:PORT (%s)", c.Addr, msg)}
	}
	if c.LogSync != "always" {
		return &UsageError{Key: "log_sync", Message: fmt.Sprintf("%q would acknowledge events before they are on disk; tandem only runs with \"always\" (fsync before every acknowledgement)", c.LogSync)}
	}
	if c.Log != "" && !strings.HasPrefix(c.Log, "nats://") {
		return &UsageError{Key: "log", Message: fmt.Sprintf("%q is not a nats:// URL (empty: the embedded log)", c.Log)}
	}
	if c.State != "" && !strings.HasPrefix(c.State, "postgres://") && !strings.HasPrefix(c.State, "postgresql://") {
		return &UsageError{Key: "state", Message: fmt.Sprintf("%q is not a postgres:// URL (empty: the embedded state store)", c.State)}
	}
	if c.Events != "" && !strings.HasPrefix(c.Events, "clickhouse://") {
		return &UsageError{Key: "events", Message: fmt.Sprintf("%q is not a clickhouse:// URL (empty: the embedded event store)", c.Events)}
	}
	if c.LogMaxBytes < 0 {
		return &UsageError{Key: "log_max_bytes", Message: "must not be negative"}
	}
	if c.LogMaxAge < 0 {
		return &UsageError{Key: "log_max_age", Message: "must not be negative"}
	}
	if c.LogReplicas < 0 || c.LogReplicas > 5 {
		return &UsageError{Key: "log_replicas", Message: fmt.Sprintf("%d: want 0 (automatic) or 1 to 5", c.LogReplicas)}
	}
	if c.LogAckWait < time.Second {
		return &UsageError{Key: "log_ack_wait", Message: fmt.Sprintf("%s: must be at least 1s", c.LogAckWait)}
	}
	if c.QueueBytes < minQueueBytes {
		return &UsageError{Key: "log_queue_bytes", Message: fmt.Sprintf("%s: must be at least %s", formatSize(c.QueueBytes), formatSize(minQueueBytes))}
	}
	if c.MaxPipelineLag < 0 {
		return &UsageError{Key: "max_pipeline_lag", Message: fmt.Sprintf("%s: want 0 (keep accepting) or a positive duration", c.MaxPipelineLag)}
	}
	if c.ReplayLast < 0 {
		return &UsageError{Key: "replay_last", Message: fmt.Sprintf("%s: want 0 (no replay) or a positive duration", c.ReplayLast)}
	}
	if c.MaxInflight < 1 {
		return &UsageError{Key: "max_inflight", Message: fmt.Sprintf("%d: must be at least 1", c.MaxInflight)}
	}
	if c.SourceRateLimit < 0 || math.IsNaN(c.SourceRateLimit) || math.IsInf(c.SourceRateLimit, 0) {
		return &UsageError{Key: "source_rate_limit", Message: fmt.Sprintf("%v: want 0 (no limit) or a positive number", c.SourceRateLimit)}
	}
	if c.SourceBurst < 0 {
		return &UsageError{Key: "source_burst", Message: fmt.Sprintf("%d: must not be negative", c.SourceBurst)}
	}
	for _, cidr := range c.DestinationAllow {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			return &UsageError{Key: "destination_allow", Message: fmt.Sprintf("%q is not a CIDR (e.g. 127.0.0.0/8)", cidr)}
		}
	}
	for _, p := range c.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			return &UsageError{Key: "trusted_proxies", Message: fmt.Sprintf("%q is not a CIDR or an IP address", p)}
		}
	}
	if msg := checkPublicURL(c.PublicURL); msg != "" {
		return &UsageError{Key: "public_url", Message: fmt.Sprintf("%q %s", c.PublicURL, msg)}
	}
	if c.ShutdownTimeout <= 0 {
		return &UsageError{Key: "shutdown_timeout", Message: fmt.Sprintf("%s: must be positive", c.ShutdownTimeout)}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return &UsageError{Key: "log_level", Message: fmt.Sprintf("%q: want debug, info, warn or error", c.LogLevel)}
	}
	if err := analytics.ValidateStages(c.Journey.Stages, "journey.stages"); err != nil {
		var fe *analytics.FieldError
		if errors.As(err, &fe) {
			return &UsageError{Key: fe.Field, Message: fe.Message}
		}
		return err
	}
	if err := c.Attribution.Validate(); err != nil {
		var ce *attribution.ConfigError
		if errors.As(err, &ce) {
			return &UsageError{Key: ce.Key, Message: ce.Message}
		}
		return &UsageError{Key: "attribution", Message: err.Error()}
	}
	if err := c.Identity.Validate(); err != nil {
		var ve *identity.ValidationError
		if errors.As(err, &ve) {
			return &UsageError{Key: ve.Key, Message: ve.Message}
		}
		return &UsageError{Key: "identity", Message: err.Error()}
	}
	if err := c.Consent.Validate(); err != nil {
		var ve *privacy.ValidationError
		if errors.As(err, &ve) {
			return &UsageError{Key: ve.Key, Message: ve.Message}
		}
		return &UsageError{Key: "consent", Message: err.Error()}
	}
	if err := c.Policy.Validate(); err != nil {
		var ve *policy.ValidationError
		if errors.As(err, &ve) {
			return &UsageError{Key: ve.Key, Message: ve.Message}
		}
		return &UsageError{Key: "policy", Message: err.Error()}
	}
	for key, v := range map[string]interface{ Validate() error }{"retention": c.Retention, "privacy": c.Privacy} {
		if err := v.Validate(); err != nil {
			var ve *privacy.ValidationError
			if errors.As(err, &ve) {
				return &UsageError{Key: ve.Key, Message: ve.Message}
			}
			return &UsageError{Key: key, Message: err.Error()}
		}
	}
	return nil
}

// minQueueBytes is the least --log-queue-bytes: below it one large batch
// request could not be queued at all.
const minQueueBytes = 1 << 20

// ParsePrefix reads one entry of trusted_proxies: a CIDR (10.0.0.0/8,
// fd00::/8) or a bare IP address, which stands for itself alone (/32 or
// /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkPublicURL says what is wrong with a --public-url, or "" when it is
// empty or an absolute http(s) URL without query or fragment.
func checkPublicURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "":
		return "is not an absolute URL (want http://host[:port][/path] or https://…)"
	case u.Scheme != "http" && u.Scheme != "https":
		return "is not an http or https URL"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return "must not have a query or a fragment"
	case u.User != nil:
		return "must not carry a user or password"
	}
	return ""
}
