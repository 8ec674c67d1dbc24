// Package config is tandem's server configuration: defaults, then an
// optional YAML file, then TANDEM_* environment variables, then flags, each
// overriding the one before; [Config.Validate] then checks the result and
// names the flag or key at fault.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"tandem/analytics"
	"tandem/identity"
)

// Config is everything `tandem serve` needs.
type Config struct {
	DataDir string `yaml:"data_dir"`
	Addr    string `yaml:"addr"`

	// Backends, chosen by URL. Empty means the embedded default under DataDir.
	Log    string `yaml:"log"`    // nats://host:port[,host:port…]
	State  string `yaml:"state"`  // postgres://…
	Events string `yaml:"events"` // clickhouse://…

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

	Pipeline bool `yaml:"pipeline"` // run the processing pipeline on this node

	// Journey is the lifecycle the journey analytics report on.
	Journey Journey `yaml:"journey"`

	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	LogLevel        string        `yaml:"log_level"` // debug, info, warn, error

	// Identity are the identity resolution rules (see docs/identity.md);
	// only the config file sets them.
	Identity identity.Rules `yaml:"identity"`

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
		ShutdownTimeout: 30 * time.Second,
		LogLevel:        "info",
		Journey:         Journey{Stages: DefaultStages()},
		Identity:        identity.DefaultRules(),
	}
}

// UsageError is a bad flag, variable or key; `serve` exits 2 with it.
type UsageError struct {
	Key     string // the flag (--addr), variable (TANDEM_ADDR) or config key (log_sync)
	Message string
}

func (e *UsageError) Error() string { return e.Key + ": " + e.Message }

// ErrHelp is returned when -h or --help was asked for; usage has been printed.
var ErrHelp = flag.ErrHelp

// Load builds the configuration for `tandem serve` from args (without the
// subcommand), the environment lookup getenv, and the --config file.
func Load(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("tandem serve", flag.ContinueOnError)
	fs.SetOutput(usage)
	var (
		dataDir, addr, file, logURL, state, events, logSync, allow, level string
		maxBytes                                                          int64
		maxAge, shutdown, ackWait                                         time.Duration
		rate                                                              float64
		burst, replicas                                                   int
		pipeline                                                          bool
	)
	fs.StringVar(&dataDir, "data-dir", c.DataDir, "directory for the embedded event log, state store and event store (TANDEM_DATA_DIR)")
	fs.StringVar(&addr, "addr", c.Addr, "HOST:PORT to listen on (TANDEM_ADDR)")
	fs.StringVar(&file, "config", "", "YAML configuration file (TANDEM_CONFIG)")
	fs.StringVar(&logURL, "log", "", "event log: empty for embedded NATS JetStream, or nats://host:port[,…] (TANDEM_LOG)")
	fs.StringVar(&state, "state", "", "state store: empty for embedded SQLite, or postgres://… (TANDEM_STATE)")
	fs.StringVar(&events, "events", "", "event store: empty for embedded DuckDB, or clickhouse://… (TANDEM_EVENTS)")
	fs.StringVar(&logSync, "log-sync", c.LogSync, "when the event log acknowledges: only \"always\" (after fsync) is accepted (TANDEM_LOG_SYNC)")
	fs.Int64Var(&maxBytes, "log-max-bytes", 0, "cap on event log size in bytes; when full, collection answers 503 (TANDEM_LOG_MAX_BYTES)")
	fs.DurationVar(&maxAge, "log-max-age", c.LogMaxAge, "how long records stay in the event log (TANDEM_LOG_MAX_AGE)")
	fs.IntVar(&replicas, "log-replicas", c.LogReplicas, "replicas of the external event log's stream; 0: 3 when --log names three or more servers, else 1 (TANDEM_LOG_REPLICAS)")
	fs.DurationVar(&ackWait, "log-ack-wait", c.LogAckWait, "external event log: how long records fetched by a node that died wait before another node processes them (TANDEM_LOG_ACK_WAIT)")
	fs.Float64Var(&rate, "source-rate-limit", c.SourceRateLimit, "events per second one source may send; 0 disables (TANDEM_SOURCE_RATE_LIMIT)")
	fs.IntVar(&burst, "source-burst", c.SourceBurst, "events one source may send in a burst (TANDEM_SOURCE_BURST)")
	fs.StringVar(&allow, "destination-allow", "", "CIDRs destinations may reach despite the SSRF guard, comma-separated (TANDEM_DESTINATION_ALLOW)")
	fs.BoolVar(&pipeline, "pipeline", c.Pipeline, "run the processing pipeline on this node; false makes a collection-only node (TANDEM_PIPELINE)")
	fs.DurationVar(&shutdown, "shutdown-timeout", c.ShutdownTimeout, "how long SIGTERM waits for in-flight work (TANDEM_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&level, "log-level", c.LogLevel, "debug, info, warn or error (TANDEM_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, ErrHelp
		}
		return c, &UsageError{Key: "flags", Message: err.Error()}
	}
	if fs.NArg() > 0 {
		return c, &UsageError{Key: "flags", Message: fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	// The config file comes first; env and flags override it.
	if !set["config"] {
		file = getenv("TANDEM_CONFIG")
	}
	if file != "" {
		if err := c.loadFile(file); err != nil {
			return c, err
		}
		c.File = file
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || f.Name == "config" {
			return
		}
		env := "TANDEM_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		val, from := "", ""
		switch {
		case set[f.Name]:
			val, from = f.Value.String(), "--"+f.Name
		case getenv(env) != "":
			val, from = getenv(env), env
		default:
			return
		}
		if e := c.set(f.Name, val); e != nil {
			err = &UsageError{Key: from, Message: e.Error()}
		}
	})
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

// set assigns one flag's value by name.
func (c *Config) set(name, val string) error {
	var err error
	switch name {
	case "data-dir":
		c.DataDir = val
	case "addr":
		c.Addr = val
	case "log":
		c.Log = val
	case "state":
		c.State = val
	case "events":
		c.Events = val
	case "log-sync":
		c.LogSync = val
	case "log-max-bytes":
		_, err = fmt.Sscan(val, &c.LogMaxBytes)
	case "log-max-age":
		c.LogMaxAge, err = time.ParseDuration(val)
	case "log-replicas":
		_, err = fmt.Sscan(val, &c.LogReplicas)
	case "log-ack-wait":
		c.LogAckWait, err = time.ParseDuration(val)
	case "source-rate-limit":
		_, err = fmt.Sscan(val, &c.SourceRateLimit)
	case "source-burst":
		_, err = fmt.Sscan(val, &c.SourceBurst)
	case "destination-allow":
		c.DestinationAllow = splitList(val)
	case "shutdown-timeout":
		c.ShutdownTimeout, err = time.ParseDuration(val)
	case "log-level":
		c.LogLevel = val
	case "pipeline":
		switch strings.ToLower(val) {
		case "true", "1", "yes", "on":
			c.Pipeline = true
		case "false", "0", "no", "off":
			c.Pipeline = false
		default:
			err = errors.New("not a boolean")
		}
	}
	if err != nil {
		return fmt.Errorf("invalid value %q", val)
	}
	return nil
}

func (c *Config) loadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return &UsageError{Key: "--config", Message: err.Error()}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// A file that sets journey.stages replaces the default lifecycle
	// rather than merging into it.
	c.Journey.Stages = nil
	defer func() {
		if c.Journey.Stages == nil {
			c.Journey.Stages = DefaultStages()
		}
	}()
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return &UsageError{Key: path, Message: err.Error()}
	}
	return nil
}

// Validate checks the configuration, naming the key at fault.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return &UsageError{Key: "data_dir", Message: "must not be empty"}
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return &UsageError{Key: "addr", Message: "want HOST:PORT: " + err.Error()}
	}
	if c.LogSync != "always" {
		return &UsageError{Key: "log_sync", Message: fmt.Sprintf("%q would acknowledge events before they are on disk; tandem only runs with \"always\" (fsync before every acknowledgement)", c.LogSync)}
	}
	if c.Log != "" && !strings.HasPrefix(c.Log, "nats://") {
		return &UsageError{Key: "log", Message: "want empty (embedded) or a nats:// URL"}
	}
	if c.State != "" && !strings.HasPrefix(c.State, "postgres://") && !strings.HasPrefix(c.State, "postgresql://") {
		return &UsageError{Key: "state", Message: "want empty (embedded) or a postgres:// URL"}
	}
	if c.Events != "" && !strings.HasPrefix(c.Events, "clickhouse://") {
		return &UsageError{Key: "events", Message: "want empty (embedded) or a clickhouse:// URL"}
	}
	if c.LogMaxBytes < 0 {
		return &UsageError{Key: "log_max_bytes", Message: "must not be negative"}
	}
	if c.LogMaxAge < 0 {
		return &UsageError{Key: "log_max_age", Message: "must not be negative"}
	}
	if c.LogReplicas < 0 || c.LogReplicas > 5 {
		return &UsageError{Key: "log_replicas", Message: "want 0 (automatic) or 1 to 5"}
	}
	if c.LogAckWait < time.Second {
		return &UsageError{Key: "log_ack_wait", Message: "must be at least 1s"}
	}
	if c.SourceRateLimit < 0 {
		return &UsageError{Key: "source_rate_limit", Message: "must not be negative"}
	}
	if c.SourceBurst < 0 {
		return &UsageError{Key: "source_burst", Message: "must not be negative"}
	}
	for _, cidr := range c.DestinationAllow {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			return &UsageError{Key: "destination_allow", Message: fmt.Sprintf("%q is not a CIDR", cidr)}
		}
	}
	if c.ShutdownTimeout <= 0 {
		return &UsageError{Key: "shutdown_timeout", Message: "must be positive"}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return &UsageError{Key: "log_level", Message: "want debug, info, warn or error"}
	}
	if err := analytics.ValidateStages(c.Journey.Stages, "journey.stages"); err != nil {
		var fe *analytics.FieldError
		if errors.As(err, &fe) {
			return &UsageError{Key: fe.Field, Message: fe.Message}
		}
		return err
	}
	if err := c.Identity.Validate(); err != nil {
		var ve *identity.ValidationError
		if errors.As(err, &ve) {
			return &UsageError{Key: ve.Key, Message: ve.Message}
		}
		return &UsageError{Key: "identity", Message: err.Error()}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
