package attribution

import (
	"fmt"
	"strings"
	"time"
)

// Config is the attribution configuration (the attribution: key of the
// config file, docs/attribution.md).
type Config struct {
	// Channels are rules tried in order before the built-in taxonomy; the
	// first that matches names the touch's channel.
	Channels []Rule `yaml:"channels"`
	// Tools are rules tried in order that credit a touch to a catalogue
	// tool (an e-mail service, an ad platform); a touch no rule matches
	// is credited to the source it came through.
	Tools []Rule `yaml:"tools"`
	// HalfLife is the time-decay model's default half-life.
	HalfLife time.Duration `yaml:"half_life"`
	// Lookback is the default lookback window.
	Lookback time.Duration `yaml:"lookback"`
	// Conversion is the report's default conversion (GET /analytics/roi).
	Conversion Conversion `yaml:"conversion"`
	// Visit is how long a repeated touch (same channel, campaign and
	// source) counts as the same visit and not as a new touch.
	Visit time.Duration `yaml:"visit"`
}

// DefaultConfig is the configuration when the file sets none.
func DefaultConfig() Config {
	return Config{
		HalfLife:   7 * 24 * time.Hour,
		Lookback:   30 * 24 * time.Hour,
		Conversion: Conversion{Event: "Order Completed", Value: "revenue"},
		Visit:      30 * time.Minute,
	}
}

// Validate checks c; the error is a *ConfigError naming the key.
func (c *Config) Validate() error {
	for i := range c.Channels {
		if err := c.Channels[i].validate(fmt.Sprintf("attribution.channels[%d]", i), false); err != nil {
			return err
		}
	}
	for i := range c.Tools {
		if err := c.Tools[i].validate(fmt.Sprintf("attribution.tools[%d]", i), true); err != nil {
			return err
		}
	}
	if c.HalfLife <= 0 {
		return &ConfigError{Key: "attribution.half_life", Message: "must be positive"}
	}
	if c.Lookback <= 0 {
		return &ConfigError{Key: "attribution.lookback", Message: "must be positive"}
	}
	if c.Visit < 0 {
		return &ConfigError{Key: "attribution.visit", Message: "must not be negative"}
	}
	if strings.TrimSpace(c.Conversion.Event) == "" {
		return &ConfigError{Key: "attribution.conversion.event", Message: "must not be empty"}
	}
	return nil
}
