package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"tandem/access"
	"tandem/analytics"
	"tandem/apierror"
	"tandem/audience"
	"tandem/audit"
	"tandem/identity"
	"tandem/policy"
	"tandem/privacy"
)

// The node's settings under the decision rights (docs/governance.md):
// identity rules, lifecycle stages, consent defaults and retention. Each
// starts as the config file says; a PUT is a change of its kind, which
// takes effect at once when the proposer's role is all it needs and
// otherwise becomes a change request carried out on its last approval.
// The value put is kept in the state store (policy.Store.PutSetting) and
// overrides the file's: this node puts it in force at once, the others
// at their next LoadSettings (the server calls it every
// SettingsReload) and every node at start.

// SettingsReload is how often a node reads the settings approved through
// another node.
const SettingsReload = 10 * time.Second

// setting is one kind of setting: how the API shows it, reads a PUT of
// it and puts a value in force.
type setting struct {
	kind     policy.Kind
	resource string // in the audit log, e.g. "identity-rules"
	// current is the value in force, as GET shows it.
	current func(a *API) (any, error)
	// parse reads and checks a PUT body (the whole value, in GET's
	// shape) and returns the value to keep.
	parse func(w http.ResponseWriter, r *http.Request) (any, error)
	// apply puts a kept value (parse's, as JSON) in force on this node.
	apply func(a *API, raw json.RawMessage) error
}

var settings = map[policy.Kind]*setting{
	policy.IdentityRules: {kind: policy.IdentityRules, resource: "identity-rules",
		current: func(a *API) (any, error) {
			if a.opts.Identity == nil {
				return nil, noIdentity()
			}
			return a.opts.Identity.Rules(), nil
		},
		parse: parseIdentityRules,
		apply: func(a *API, raw json.RawMessage) error {
			var rules identity.Rules
			if err := json.Unmarshal(raw, &rules); err != nil {
				return err
			}
			if a.opts.Identity == nil {
				return rules.Validate()
			}
			return a.opts.Identity.SetRules(rules)
		}},
	policy.LifecycleStages: {kind: policy.LifecycleStages, resource: "lifecycle-stages",
		current: func(a *API) (any, error) { return stagesBody{Stages: a.lifecycle()}, nil },
		parse:   parseStages,
		apply: func(a *API, raw json.RawMessage) error {
			var in stagesBody
			if err := json.Unmarshal(raw, &in); err != nil {
				return err
			}
			if err := analytics.ValidateStages(in.Stages, "stages"); err != nil {
				return err
			}
			a.setLifecycle(in.Stages)
			return nil
		}},
	policy.ConsentDefaults: {kind: policy.ConsentDefaults, resource: "consent-defaults",
		current: func(a *API) (any, error) {
			c, err := a.consentStore()
			if err != nil {
				return nil, err
			}
			return consentBodyOf(c.Config()), nil
		},
		parse: parseConsentDefaults,
		apply: func(a *API, raw json.RawMessage) error {
			var in consentBody
			if err := json.Unmarshal(raw, &in); err != nil {
				return err
			}
			cfg := in.config()
			if err := cfg.Validate(); err != nil {
				return err
			}
			if a.opts.Consent != nil {
				a.opts.Consent.SetConfig(cfg)
			}
			return nil
		}},
	policy.Retention: {kind: policy.Retention, resource: "retention",
		current: func(a *API) (any, error) {
			rt, err := a.retainer()
			if err != nil {
				return nil, err
			}
			return retentionBodyOf(rt.Policy()), nil
		},
		parse: parseRetention,
		apply: func(a *API, raw json.RawMessage) error {
			var in retentionBody
			if err := json.Unmarshal(raw, &in); err != nil {
				return err
			}
			p, err := in.policy()
			if err != nil {
				return err
			}
			if a.opts.Retention != nil {
				a.opts.Retention.SetPolicy(p)
			}
			if a.opts.OnRetention != nil {
				a.opts.OnRetention(p)
			}
			return nil
		}},
}

func (a *API) settingsRoutes() {
	a.route("/api/v1/identity/rules", map[string]handler{
		"GET": a.need(access.ReadCatalog, a.getSetting(policy.IdentityRules)),
		"PUT": a.need(access.ProposeSettings, a.putSetting(policy.IdentityRules)),
	})
	a.route("/api/v1/journey/stages", map[string]handler{
		"GET": a.need(access.ReadCatalog, a.getSetting(policy.LifecycleStages)),
		"PUT": a.need(access.ProposeSettings, a.putSetting(policy.LifecycleStages)),
	})
	a.route("/api/v1/privacy/consent-defaults", map[string]handler{
		"GET": a.need(access.ReadCatalog, a.getSetting(policy.ConsentDefaults)),
		"PUT": a.need(access.ProposeSettings, a.putSetting(policy.ConsentDefaults)),
	})
	// PUT /privacy/retention: recordsRoutes, beside its GET.
	if a.opts.Changes != nil {
		for _, k := range policy.SettingKinds {
			a.opts.Changes.Handle(k, a.applySettingChange)
		}
	}
}

func noIdentity() error {
	return &apierror.Error{Status: 503, Code: apierror.CodeUnavailable, Message: "identity resolution does not run on this node", RetryAfter: 1}
}

// lifecycle is the journey's lifecycle stages in force.
func (a *API) lifecycle() []analytics.Stage {
	if p := a.stages.Load(); p != nil {
		return *p
	}
	return []analytics.Stage{}
}

// setLifecycle puts stages in force for the journey reports and, where
// the pipeline keeps which stages profiles reached, for the events
// recorded from then on.
func (a *API) setLifecycle(stages []analytics.Stage) {
	st := nonNil(stages)
	a.stages.Store(&st)
	if a.opts.Traits != nil {
		a.opts.Traits.SetStages(AudienceStages(st))
	}
}

// AudienceStages are the lifecycle stages as the computed traits keep
// them.
func AudienceStages(stages []analytics.Stage) []audience.Stage {
	out := make([]audience.Stage, 0, len(stages))
	for _, st := range stages {
		out = append(out, audience.Stage{Name: st.Name, Events: st.Events})
	}
	return out
}

func (a *API) getSetting(k policy.Kind) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		v, err := settings[k].current(a)
		if err != nil {
			return err
		}
		return writeJSON(w, 200, v)
	}
}

// putSetting proposes a new value of setting k: in force at once (200
// with the value) when the caller's role is all the decision rights
// need, else kept as a change request (202 with the change) until the
// last approval.
func (a *API) putSetting(k policy.Kind) handler {
	set := settings[k]
	return func(w http.ResponseWriter, r *http.Request) error {
		before, err := set.current(a)
		if err != nil {
			return err
		}
		after, err := set.parse(w, r)
		if err != nil {
			return err
		}
		as, err := a.assess(r.Context(), k, nil)
		if err != nil {
			return err
		}
		if !as.Direct {
			c, err := a.propose(r.Context(), policy.Proposal{Kind: k, Action: policy.Update, Subject: string(k),
				Before: before, After: after, Payload: after, Assessment: as})
			if err != nil {
				return err
			}
			return held(w, c)
		}
		raw, err := json.Marshal(after)
		if err != nil {
			return err
		}
		if err := a.putInForce(r.Context(), set, raw, userFrom(r.Context()).ID, ""); err != nil {
			return err
		}
		a.recordChange(r, audit.Record{Action: set.resource + ".put", Resource: set.resource, Before: before, After: after})
		if k == policy.Retention {
			return a.getRetention(w, r)
		}
		return a.getSetting(k)(w, r)
	}
}

// putInForce keeps raw as setting set's value (in the state store, when
// change requests are kept) and puts it in force on this node.
func (a *API) putInForce(ctx context.Context, set *setting, raw json.RawMessage, by, change string) error {
	if a.opts.Changes != nil {
		kept, err := a.opts.Changes.PutSetting(ctx, set.kind, raw, by, change)
		if err != nil {
			return err
		}
		a.settingsMu.Lock()
		defer a.settingsMu.Unlock()
		if err := set.apply(a, raw); err != nil {
			return fmt.Errorf("put %s in force: %w", set.kind, err)
		}
		a.applied[set.kind] = kept.Version
		return nil
	}
	a.settingsMu.Lock()
	defer a.settingsMu.Unlock()
	return set.apply(a, raw)
}

// applySettingChange carries out an approved change of a setting.
func (a *API) applySettingChange(ctx context.Context, d policy.Decided) error {
	if d.Decision != policy.Approve {
		return nil
	}
	set := settings[d.Change.Kind]
	if set == nil {
		return fmt.Errorf("change %s: %s is no setting", d.Change.ID, d.Change.Kind)
	}
	before, _ := set.current(a)
	if err := a.putInForce(ctx, set, d.Payload, d.Proposer.ID, d.Change.ID); err != nil {
		return err
	}
	after, _ := set.current(a)
	a.recordChangeCtx(ctx, audit.Record{Action: set.resource + ".put", Resource: set.resource, ChangeRequest: d.Change.ID,
		Before: before, After: after})
	return nil
}

// LoadSettings puts in force the settings approved (on any node) since
// this node last did: at start, then every [SettingsReload]. A stored
// value this version cannot read is logged and skipped (the node keeps
// what it has).
func (a *API) LoadSettings(ctx context.Context) error {
	if a.opts.Changes == nil {
		return nil
	}
	kept, err := a.opts.Changes.Settings(ctx)
	if err != nil {
		return err
	}
	a.settingsMu.Lock()
	defer a.settingsMu.Unlock()
	for _, k := range policy.SettingKinds {
		s, ok := kept[k]
		if !ok || s.Version <= a.applied[k] {
			continue
		}
		if err := settings[k].apply(a, s.Value); err != nil {
			a.opts.Logger.Error("a stored setting could not be put in force; keeping the one in force", "kind", string(k),
				"version", s.Version, "err", err.Error())
		} else {
			a.opts.Logger.Info("setting put in force from the state store", "kind", string(k), "version", s.Version, "change", s.Change)
		}
		a.applied[k] = s.Version
	}
	return nil
}

// RunSettingsLoads calls LoadSettings every interval until ctx is done.
func (a *API) RunSettingsLoads(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.LoadSettings(ctx); err != nil && ctx.Err() == nil {
			a.opts.Logger.Warn("reading the approved settings failed; trying again", "err", err.Error())
		}
	}
}

// required fails with missing_field for the first of names body lacks.
func required(body map[string]json.RawMessage, names ...string) error {
	for _, n := range names {
		if _, ok := body[n]; !ok {
			return apierror.Field(n, apierror.CodeMissingField, "is required: a PUT gives the whole value, as GET shows it")
		}
	}
	return nil
}

// decodeWhole decodes a PUT body into v (unknown fields refused) and
// checks that it names every one of names.
func decodeWhole(w http.ResponseWriter, r *http.Request, v any, names ...string) error {
	var raw json.RawMessage
	if err := decode(w, r, &raw); err != nil {
		return err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return apierror.Of(apierror.CodeInvalidBody, "the body must be a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return apierror.Field(te.Field, apierror.CodeInvalidType, "must be "+jsonKind(te.Type.Kind().String()))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return apierror.Field(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), apierror.CodeUnknownField, "no such field")
		}
		return apierror.Of(apierror.CodeInvalidBody, err.Error())
	}
	return required(keys, names...)
}

// configField turns a config file key ("consent.gpc_purposes[1]") into
// the field of the API's body ("gpcPurposes[1]"): the section dropped,
// the key's first part in the API's camelCase.
func configField(key, section string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, section), ".")
	end := strings.IndexAny(key, ".[")
	if end < 0 {
		end = len(key)
	}
	var b strings.Builder
	up := false
	for _, r := range key[:end] {
		switch {
		case r == '_':
			up = true
		case up:
			b.WriteRune(unicode.ToUpper(r))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return section
	}
	return b.String() + key[end:]
}

func parseIdentityRules(w http.ResponseWriter, r *http.Request) (any, error) {
	var rules identity.Rules
	if err := decodeWhole(w, r, &rules, "types", "blocked"); err != nil {
		return nil, err
	}
	if err := rules.Validate(); err != nil {
		var ve *identity.ValidationError
		if errors.As(err, &ve) {
			return nil, apierror.Field(configField(ve.Key, "identity"), apierror.CodeInvalidField, ve.Message)
		}
		return nil, err
	}
	if rules.Blocked == nil {
		rules.Blocked = []string{}
	}
	return rules, nil
}

// stagesBody is the lifecycle as the API shows and takes it.
type stagesBody struct {
	Stages []analytics.Stage `json:"stages"`
}

func parseStages(w http.ResponseWriter, r *http.Request) (any, error) {
	var in stagesBody
	if err := decodeWhole(w, r, &in, "stages"); err != nil {
		return nil, err
	}
	if err := analytics.ValidateStages(in.Stages, "stages"); err != nil {
		return nil, err
	}
	return in, nil
}

// consentBody is the consent configuration as the API shows and takes
// it: the defaults per purpose, the purposes Sec-GPC refuses and those
// an objection refuses (empty: privacy.DefaultObjectionPurposes).
type consentBody struct {
	Defaults          map[string]bool `json:"defaults"`
	GPCPurposes       []string        `json:"gpcPurposes"`
	ObjectionPurposes []string        `json:"objectionPurposes"`
}

func consentBodyOf(c privacy.Config) consentBody {
	b := consentBody{Defaults: c.Defaults, GPCPurposes: nonNil(c.GPCPurposes), ObjectionPurposes: nonNil(c.ObjectionPurposes)}
	if b.Defaults == nil {
		b.Defaults = map[string]bool{}
	}
	return b
}

func (b consentBody) config() privacy.Config {
	return privacy.Config{Defaults: b.Defaults, GPCPurposes: b.GPCPurposes, ObjectionPurposes: b.ObjectionPurposes}
}

func parseConsentDefaults(w http.ResponseWriter, r *http.Request) (any, error) {
	var in consentBody
	if err := decodeWhole(w, r, &in, "defaults", "gpcPurposes"); err != nil {
		return nil, err
	}
	if err := in.config().Validate(); err != nil {
		var ve *privacy.ValidationError
		if errors.As(err, &ve) {
			return nil, apierror.Field(configField(ve.Key, "consent"), apierror.CodeInvalidField, ve.Message)
		}
		return nil, err
	}
	return consentBodyOf(in.config()), nil
}

// retentionBody is the retention policy as the API takes it: the
// maximum ages as Go durations ("720h"; "" for none) and how often
// expired data is removed ("" for the default, 1h).
type retentionBody struct {
	Default        string            `json:"default"`
	Sources        map[string]string `json:"sources"`
	Categories     map[string]string `json:"categories"`
	ConsentHistory string            `json:"consentHistory"`
	Every          string            `json:"every"`
}

func retentionBodyOf(p privacy.Retention) retentionBody {
	d := func(v time.Duration) string {
		if v <= 0 {
			return ""
		}
		return v.String()
	}
	b := retentionBody{Default: d(p.Default), Sources: map[string]string{}, Categories: map[string]string{},
		ConsentHistory: d(p.ConsentHistory), Every: d(p.Every)}
	for k, v := range p.Sources {
		b.Sources[k] = d(v)
	}
	for k, v := range p.Categories {
		b.Categories[k] = d(v)
	}
	return b
}

// policy reads the durations; errors name the body's field.
func (b retentionBody) policy() (privacy.Retention, error) {
	var p privacy.Retention
	dur := func(field, s string) (time.Duration, error) {
		if s == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, apierror.Field(field, apierror.CodeInvalidField, fmt.Sprintf("%q is not a duration (Go's form: 720h, 90m; \"\" for none)", s))
		}
		return d, nil
	}
	var err error
	if p.Default, err = dur("default", b.Default); err != nil {
		return p, err
	}
	if p.ConsentHistory, err = dur("consentHistory", b.ConsentHistory); err != nil {
		return p, err
	}
	if p.Every, err = dur("every", b.Every); err != nil {
		return p, err
	}
	for _, m := range []struct {
		field string
		in    map[string]string
		out   *map[string]time.Duration
	}{{"sources", b.Sources, &p.Sources}, {"categories", b.Categories, &p.Categories}} {
		*m.out = map[string]time.Duration{}
		for k, v := range m.in {
			if (*m.out)[k], err = dur(m.field+"."+k, v); err != nil {
				return p, err
			}
		}
	}
	if err := p.Validate(); err != nil {
		var ve *privacy.ValidationError
		if errors.As(err, &ve) {
			return p, apierror.Field(configField(ve.Key, "retention"), apierror.CodeInvalidField, ve.Message)
		}
		return p, err
	}
	return p, nil
}

func parseRetention(w http.ResponseWriter, r *http.Request) (any, error) {
	var in retentionBody
	if err := decodeWhole(w, r, &in, "default", "sources", "categories", "consentHistory"); err != nil {
		return nil, err
	}
	p, err := in.policy()
	if err != nil {
		return nil, err
	}
	return retentionBodyOf(p), nil
}
