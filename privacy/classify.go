package privacy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"tandem/trackingplan"
)

// Settings is the config file's privacy key.
type Settings struct {
	// Categories tag fields with a data category: a path such as
	// traits.email, properties.card_last4 or context.traits.crm_id (a
	// member name under traits, properties or context.traits), mapped to
	// a category (contact, sensitive, payment, identity, location, …).
	// Tracking plans tag fields too (x-category in a schema); e-mail,
	// phone, name and address are tagged by default ([DefaultCategories]).
	Categories map[string]string `yaml:"categories"`
	// Subjects are the categories of data subjects the records of
	// processing name (default [DefaultSubjects]).
	Subjects []string `yaml:"subjects"`
}

// DefaultSubjects are the data subjects of the records of processing when
// the configuration names none.
var DefaultSubjects = []string{"customers", "prospects", "website and app visitors"}

// DefaultCategories are the fields every installation tags: member
// names (compared lower-case, without "_" and "-") under traits,
// properties or context.traits, and their category.
var DefaultCategories = map[string]string{
	"email": "contact", "emailaddress": "contact",
	"phone": "contact", "phonenumber": "contact", "mobile": "contact",
	"name": "contact", "firstname": "contact", "lastname": "contact", "fullname": "contact",
	"address": "contact", "street": "contact", "postalcode": "contact", "zip": "contact",
}

// Field containers a category path may start with.
var categoryContainers = []string{"traits", "properties", "context.traits"}

// NormalizeField is the form fields are compared in: lower case, without
// "_" and "-".
func NormalizeField(name string) string {
	return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(strings.TrimSpace(name)))
}

// Validate checks the settings: each category path is a container and a
// member name, each category a name.
func (s Settings) Validate() error {
	for _, path := range slices.Sorted(maps.Keys(s.Categories)) {
		key := "privacy.categories." + path
		if _, _, ok := SplitCategoryPath(path); !ok {
			return &ValidationError{Key: key, Message: fmt.Sprintf("want traits.NAME, properties.NAME or context.traits.NAME, not %q", path)}
		}
		if c := strings.TrimSpace(s.Categories[path]); c == "" || len(c) > 100 {
			return &ValidationError{Key: key, Message: "a category is a name of 1 to 100 bytes"}
		}
	}
	for i, sub := range s.Subjects {
		if strings.TrimSpace(sub) == "" {
			return &ValidationError{Key: fmt.Sprintf("privacy.subjects[%d]", i), Message: "must not be empty"}
		}
	}
	return nil
}

// SplitCategoryPath splits a category path into its container (traits,
// properties, context.traits) and member name.
func SplitCategoryPath(path string) (container, name string, ok bool) {
	for _, c := range slices.Backward(categoryContainers) { // context.traits before traits
		if rest, found := strings.CutPrefix(path, c+"."); found && rest != "" && !strings.Contains(rest, ".") {
			return c, rest, true
		}
	}
	return "", "", false
}

// Classification tags fields with data categories, for masking and the
// records of processing: the defaults, then the configuration's, then
// the tracking plans' (a later tag of the same field wins).
type Classification struct {
	// byContainer: "traits" (also context.traits) or "properties" →
	// normalized member name → category.
	byContainer map[string]map[string]string
}

// NewClassification starts from [DefaultCategories] (traits and
// context.traits) and adds the configured categories.
func NewClassification(s Settings) *Classification {
	c := &Classification{byContainer: map[string]map[string]string{"traits": {}, "properties": {}}}
	for name, cat := range DefaultCategories {
		c.byContainer["traits"][name] = cat
	}
	for path, cat := range s.Categories {
		if cont, name, ok := SplitCategoryPath(path); ok {
			c.Add(cont, name, strings.TrimSpace(cat))
		}
	}
	return c
}

// Add tags the member name of container (traits, context.traits or
// properties) with category.
func (c *Classification) Add(container, name, category string) {
	if container == "context.traits" {
		container = "traits"
	}
	m := c.byContainer[container]
	if m == nil {
		m = map[string]string{}
		c.byContainer[container] = m
	}
	m[NormalizeField(name)] = category
}

// Category is the category of the member name directly under container
// ("traits", "context.traits" or "properties"), "" when untagged.
func (c *Classification) Category(container, name string) string {
	if c == nil {
		return ""
	}
	if container == "context.traits" {
		container = "traits"
	}
	return c.byContainer[container][NormalizeField(name)]
}

// Fields lists every tagged field as path → category (paths traits.NAME
// and properties.NAME, names normalized).
func (c *Classification) Fields() map[string]string {
	out := map[string]string{}
	if c == nil {
		return out
	}
	for cont, m := range c.byContainer {
		for name, cat := range m {
			out[cont+"."+name] = cat
		}
	}
	return out
}

// Categories lists the distinct categories of the tagged fields, sorted.
func (c *Classification) Categories() []string {
	seen := map[string]bool{}
	for _, cat := range c.Fields() {
		seen[cat] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// Clone copies c, so a caller may add tags (a tracking plan's) without
// changing it.
func (c *Classification) Clone() *Classification {
	out := &Classification{byContainer: map[string]map[string]string{}}
	for k, m := range c.byContainer {
		out.byContainer[k] = maps.Clone(m)
	}
	return out
}

// PlanLister lists the tracking plans in force (trackingplan.Store).
type PlanLister interface {
	List(ctx context.Context) ([]trackingplan.Plan, error)
}

// classifierTTL is how long a [Classifier] keeps what it read of the
// plans; [Classifier.Forget] drops it at once.
const classifierTTL = 5 * time.Second

// Classifier is the installation's classification: the configured one
// with the tracking plans' tags added, re-read at most every few seconds.
type Classifier struct {
	base  *Classification
	plans PlanLister

	mu        sync.Mutex
	at        time.Time
	cur       *Classification
	perSource map[string][]string
}

// NewClassifier returns the classifier of the settings and the plans
// (nil: the settings alone).
func NewClassifier(s Settings, plans PlanLister) *Classifier {
	return &Classifier{base: NewClassification(s), plans: plans}
}

// Forget makes the next read see the plans as they are now.
func (c *Classifier) Forget() {
	c.mu.Lock()
	c.cur = nil
	c.mu.Unlock()
}

func (c *Classifier) load(ctx context.Context) (*Classification, map[string][]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && time.Since(c.at) < classifierTTL {
		return c.cur, c.perSource, nil
	}
	cur, per := c.base.Clone(), map[string][]string{}
	if c.plans != nil {
		plans, err := c.plans.List(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("privacy: classification: %w", err)
		}
		for _, p := range plans {
			seen := map[string]bool{}
			for path, cat := range p.Categories() {
				if cont, name, ok := SplitCategoryPath(path); ok {
					cur.Add(cont, name, cat)
				}
				if !seen[cat] {
					seen[cat] = true
					per[p.SourceID] = append(per[p.SourceID], cat)
				}
			}
			slices.Sort(per[p.SourceID])
		}
	}
	c.cur, c.perSource, c.at = cur, per, time.Now()
	return cur, per, nil
}

// Current is the classification now.
func (c *Classifier) Current(ctx context.Context) (*Classification, error) {
	cur, _, err := c.load(ctx)
	return cur, err
}

// SourceCategories are, per source id, the categories its tracking plan
// tags fields with.
func (c *Classifier) SourceCategories(ctx context.Context) (map[string][]string, error) {
	_, per, err := c.load(ctx)
	return per, err
}
