package attribution

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// The channels of the built-in taxonomy (docs/attribution.md). Configured
// rules may name others.
const (
	PaidSearch    = "paid-search"
	OrganicSearch = "organic-search"
	Email         = "e-mail"
	Social        = "social"
	PaidSocial    = "paid-social"
	Display       = "display"
	Affiliate     = "affiliate"
	Referral      = "referral"
	Direct        = "direct"
	CallCentre    = "call-centre"
	FieldSales    = "field-sales"
	Store         = "store"
	SMS           = "sms"
	Other         = "other"
)

// Taxonomy lists the built-in channels.
var Taxonomy = []string{PaidSearch, OrganicSearch, Email, Social, PaidSocial, Display, Affiliate, Referral, Direct, CallCentre, FieldSales, Store, SMS, Other}

// Keys for what has no value.
const (
	// NoTouch is the key of a conversion with no touch in its lookback
	// window, in every dimension.
	NoTouch = "(none)"
	// NotSet is the campaign of a touch without one.
	NotSet = "(not set)"
)

// Fields are what a stored event says about where it came from: the
// columns a [Source] reads for each candidate touch.
type Fields struct {
	Type     string // track, page, screen, …
	SourceID string // the source (tool) it came through
	// Campaign from context.campaign (Segment's names: name, source,
	// medium); empty ones are taken from the page URL's utm_* parameters.
	Medium, CampaignSource, Campaign string
	URL                              string // context.page.url, else properties.url
	Referrer                         string // context.page.referrer, else properties.referrer
	// Channel is the touch's own channel: properties.channel, else
	// context.channel, else the event's channel field unless it is one
	// of Segment's library kinds (browser, server, mobile, client), as
	// imported offline touchpoints carry it.
	Channel string
}

// Rule assigns a channel (in Config.Channels) or a tool (in
// Config.Tools) to the touches it matches: each list given must hold the
// touch's value (case-insensitive; Referrer holds host names, matched
// with their subdomains), and at least one list must be given.
type Rule struct {
	Channel string `yaml:"channel" json:"channel,omitempty"`
	Tool    string `yaml:"tool" json:"tool,omitempty"` // a catalogue tool's id or name (Config.Tools only)

	Medium   []string `yaml:"medium" json:"medium,omitempty"`
	Source   []string `yaml:"source" json:"source,omitempty"`     // utm_source / context.campaign.source
	Campaign []string `yaml:"campaign" json:"campaign,omitempty"` // utm_campaign / context.campaign.name
	Referrer []string `yaml:"referrer" json:"referrer,omitempty"` // hosts
	// Touch matches the touch's own channel field (Fields.Channel), or in
	// Config.Tools the classified channel.
	Touch []string `yaml:"touch" json:"touch,omitempty"`
}

func (r *Rule) empty() bool {
	return len(r.Medium) == 0 && len(r.Source) == 0 && len(r.Campaign) == 0 && len(r.Referrer) == 0 && len(r.Touch) == 0
}

func (r *Rule) validate(key string, tool bool) error {
	target := r.Channel
	if tool {
		target = r.Tool
		if r.Channel != "" {
			return &ConfigError{Key: key + ".channel", Message: "a tool rule names a tool, not a channel (match the channel with touch:)"}
		}
	} else if r.Tool != "" {
		return &ConfigError{Key: key + ".tool", Message: "a channel rule names a channel"}
	}
	name := "channel"
	if tool {
		name = "tool"
	}
	if strings.TrimSpace(target) == "" {
		return &ConfigError{Key: key + "." + name, Message: "must not be empty"}
	}
	if !tool && (strings.HasPrefix(target, "(") || target != strings.ToLower(target)) {
		return &ConfigError{Key: key + ".channel", Message: fmt.Sprintf("%q: channels are lower case and do not start with (", target)}
	}
	if r.empty() {
		return &ConfigError{Key: key, Message: "give at least one of medium, source, campaign, referrer, touch"}
	}
	return nil
}

// ConfigError is a bad attribution configuration; Key names it as
// attribution.channels[2].medium.
type ConfigError struct{ Key, Message string }

func (e *ConfigError) Error() string { return e.Key + ": " + e.Message }

func fold(list []string, v string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, v) })
}

func hostIn(list []string, host string) bool {
	for _, h := range list {
		h = strings.ToLower(strings.TrimPrefix(h, "."))
		if host == h || strings.HasSuffix(host, "."+h) {
			return true
		}
	}
	return false
}

// Touch is a classified touchpoint.
type Touch struct {
	Channel, Campaign, Source string // Source: the source (tool) id it came through
	Tool                      string // the tool it is credited to (Config.Tools, else Source)
}

// Mark is what classification reads of a candidate touch: its fields
// reduced to facts that hold whatever the configuration (the URL's utm_*
// filled in, hosts instead of URLs). Event stores write it at append
// (narrow columns) so that attribution reads it instead of each event's
// JSON, and classify it with the configuration of the query.
type Mark struct {
	Type     string // page, screen or track
	SourceID string // the source (tool) it came through
	// Medium, Source and Campaign are context.campaign's medium, source
	// and name, each missing one from the page URL's utm_medium,
	// utm_source, utm_campaign; trimmed.
	Medium, Source, Campaign string
	// Channel is the touch's own channel (Fields.Channel) trimmed, "" for
	// the library kinds Segment writes there.
	Channel  string
	Referrer string // the referrer's host, lower case, without www.
	Page     string // the page URL's host, the same way
	ClickID  bool   // a click id (gclid, gbraid, wbraid, msclkid) in the page URL
	// HasReferrer says the event gave a referrer (Referrer is "" when it
	// had no host).
	HasReferrer bool
}

// MarkOf reduces a candidate event's fields to its Mark; ok is false when
// the event is no touch under any configuration: not a page, screen or
// track event, or a track or screen event without its own channel or a
// campaign (its page context repeats the page view's, which is the
// touch).
func MarkOf(f *Fields) (m Mark, ok bool) {
	if f.Type != "page" && f.Type != "screen" && f.Type != "track" {
		return Mark{}, false
	}
	own := strings.TrimSpace(f.Channel)
	if fold(sdkChannels, own) {
		own = ""
	}
	if f.Type != "page" && own == "" && strings.TrimSpace(f.Medium+f.CampaignSource+f.Campaign) == "" {
		return Mark{}, false
	}
	m = Mark{Type: f.Type, SourceID: f.SourceID, Channel: own, HasReferrer: f.Referrer != "",
		Medium: strings.TrimSpace(f.Medium), Source: strings.TrimSpace(f.CampaignSource), Campaign: strings.TrimSpace(f.Campaign)}
	if f.URL != "" {
		if u, err := url.Parse(f.URL); err == nil {
			m.Page = host(u)
			q := u.Query()
			if m.Medium == "" {
				m.Medium = strings.TrimSpace(q.Get("utm_medium"))
			}
			if m.Source == "" {
				m.Source = strings.TrimSpace(q.Get("utm_source"))
			}
			if m.Campaign == "" {
				m.Campaign = strings.TrimSpace(q.Get("utm_campaign"))
			}
			m.ClickID = q.Get("gclid") != "" || q.Get("gbraid") != "" || q.Get("wbraid") != "" || q.Get("msclkid") != ""
		}
	}
	if f.Referrer != "" {
		if u, err := url.Parse(f.Referrer); err == nil {
			m.Referrer = host(u)
		}
	}
	return m, true
}

func host(u *url.URL) string {
	return strings.TrimPrefix(strings.ToLower(u.Hostname()), "www.")
}

// sdkChannels are the values Segment's libraries put in an event's
// channel field: where the event was sent from, not a marketing channel.
var sdkChannels = []string{"browser", "server", "mobile", "client", "web", "app"}

// Classify reads an event's touch, or ok false when the event is no
// touch (docs/attribution.md, "What is a touch"): [MarkOf], then
// [Config.ClassifyMark].
func (c *Config) Classify(f *Fields) (t Touch, ok bool) {
	m, ok := MarkOf(f)
	if !ok {
		return Touch{}, false
	}
	return c.ClassifyMark(&m)
}

// ClassifyMark classifies a candidate touch: the configured channel rules
// first, in order, then the built-in taxonomy; ok false when it is no
// touch (a page reached from a page of the same site).
func (c *Config) ClassifyMark(m *Mark) (t Touch, ok bool) {
	t.Source = m.SourceID
	t.Campaign = m.Campaign
	if t.Campaign == "" {
		t.Campaign = NotSet
	}
	t.Channel = c.ruleChannel(m)
	if t.Channel == "" {
		t.Channel = builtin(m)
	}
	if t.Channel == "" {
		return Touch{}, false
	}
	t.Tool = c.tool(m, t.Channel)
	if t.Tool == "" {
		t.Tool = t.Source
	}
	return t, true
}

func (r *Rule) match(m *Mark, touch string) bool {
	return (len(r.Medium) == 0 || fold(r.Medium, m.Medium)) &&
		(len(r.Source) == 0 || fold(r.Source, m.Source)) &&
		(len(r.Campaign) == 0 || fold(r.Campaign, m.Campaign)) &&
		(len(r.Referrer) == 0 || (m.Referrer != "" && hostIn(r.Referrer, m.Referrer))) &&
		(len(r.Touch) == 0 || fold(r.Touch, touch))
}

func (c *Config) ruleChannel(m *Mark) string {
	for i := range c.Channels {
		if c.Channels[i].match(m, m.Channel) {
			return c.Channels[i].Channel
		}
	}
	return ""
}

func (c *Config) tool(m *Mark, channel string) string {
	for i := range c.Tools {
		if c.Tools[i].match(m, channel) {
			return c.Tools[i].Tool
		}
	}
	return ""
}

var (
	searchHosts = []string{"google.com", "google.de", "google.co.uk", "google.fr", "google.ch", "google.at", "google.nl", "google.es", "google.it",
		"bing.com", "duckduckgo.com", "search.yahoo.com", "yahoo.com", "baidu.com", "yandex.ru", "yandex.com", "ecosia.org", "qwant.com", "startpage.com", "search.brave.com"}
	socialHosts = []string{"facebook.com", "fb.com", "instagram.com", "linkedin.com", "lnkd.in", "twitter.com", "x.com", "t.co", "youtube.com",
		"reddit.com", "pinterest.com", "tiktok.com", "xing.com", "threads.net", "mastodon.social", "bsky.app"}
	mailHosts = []string{"mail.google.com", "outlook.live.com", "outlook.office.com", "mail.yahoo.com", "webmail.gmx.net", "mail.proton.me"}

	ownAliases = map[string]string{
		"call-centre": CallCentre, "call centre": CallCentre, "call-center": CallCentre, "call center": CallCentre, "callcenter": CallCentre,
		"phone": CallCentre, "telephone": CallCentre,
		"field-sales": FieldSales, "field sales": FieldSales, "fieldsales": FieldSales, "field": FieldSales, "sales-visit": FieldSales,
		"store": Store, "shop": Store, "retail": Store, "pos": Store, "in-store": Store,
		"email": Email, "e-mail": Email, "newsletter": Email, "sms": SMS,
	}
	mediums = map[string]string{
		"cpc": PaidSearch, "ppc": PaidSearch, "paid": PaidSearch, "paidsearch": PaidSearch, "paid-search": PaidSearch, "paid_search": PaidSearch, "sem": PaidSearch,
		"paid-social": PaidSocial, "paidsocial": PaidSocial, "paid_social": PaidSocial, "social-paid": PaidSocial, "social_paid": PaidSocial,
		"email": Email, "e-mail": Email, "e_mail": Email, "newsletter": Email,
		"display": Display, "banner": Display, "cpm": Display, "programmatic": Display, "video": Display,
		"social": Social, "social-network": Social, "social-media": Social, "sm": Social, "organic-social": Social, "organic_social": Social,
		"affiliate": Affiliate, "affiliates": Affiliate, "partner": Affiliate,
		"referral": Referral, "organic": OrganicSearch, "sms": SMS,
	}
)

// builtin is the built-in taxonomy: the touch's own channel, then its
// campaign's medium (and source), a click id, the referrer's host, and a
// page view with neither is direct.
func builtin(m *Mark) string {
	if m.Channel != "" {
		l := strings.ToLower(m.Channel)
		if ch, ok := ownAliases[l]; ok {
			return ch
		}
		return strings.Join(strings.Fields(l), "-")
	}
	if m.Medium != "" {
		ch, ok := mediums[strings.ToLower(m.Medium)]
		if !ok {
			return Other
		}
		if ch == PaidSearch && hostIn(socialHosts, strings.ToLower(m.Source)+".com") {
			return PaidSocial
		}
		return ch
	}
	if m.ClickID {
		return PaidSearch
	}
	if m.Source != "" || m.Campaign != "" {
		return Other
	}
	if m.Referrer != "" {
		switch {
		case m.Referrer == m.Page:
			return "" // a page of the same site: no new touch
		case hostIn(mailHosts, m.Referrer):
			return Email
		case hostIn(searchHosts, m.Referrer) || strings.HasPrefix(m.Referrer, "google.") || strings.Contains(m.Referrer, ".google."):
			return OrganicSearch
		case hostIn(socialHosts, m.Referrer):
			return Social
		}
		return Referral
	}
	if m.Type == "page" && !m.HasReferrer {
		return Direct
	}
	return ""
}
