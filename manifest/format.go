package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxShown is how many characters of a value a plan shows.
const maxShown = 120

// Describe is the op as a plan shows it: a first line with the action and
// the resource, then one line per field (for a change, before → after).
// Secrets show as (secret).
func (o *Op) Describe() []string {
	sign := map[Action]string{Create: "+", Change: "~", Delete: "-"}[o.Action]
	lines := []string{fmt.Sprintf("%s %s %s", sign, o.Action, o.Label())}
	if o.Action == Change && o.Kind.Update == Replace {
		lines[0] += " (deleted and created anew: recomputed from the stored events)"
	}
	if o.Note != "" {
		lines = append(lines, "    ("+o.Note+")")
	}
	for _, c := range o.Changes {
		after := shown(o.maskSecrets(c.Key, c.After), c.Secret)
		switch {
		case o.Action == Create || o.Have == nil:
			lines = append(lines, fmt.Sprintf("    %s: %s", c.Key, after))
		case c.Before == nil:
			lines = append(lines, fmt.Sprintf("    %s: (none) → %s", c.Key, after))
		case c.After == nil:
			lines = append(lines, fmt.Sprintf("    %s: %s → (none)", c.Key, shown(c.Before, false)))
		default:
			lines = append(lines, fmt.Sprintf("    %s: %s → %s", c.Key, shown(c.Before, false), after))
		}
	}
	return lines
}

// maskSecrets hides the secrets of a destination's whole config.
func (o *Op) maskSecrets(key string, v any) any {
	cfg, ok := v.(map[string]any)
	if !ok || key != "config" || o.Want == nil {
		return v
	}
	out := make(map[string]any, len(cfg))
	for k, e := range cfg {
		if isSecret(o.Want, k) {
			e = "(secret)"
		}
		out[k] = e
	}
	return out
}

func shown(v any, secret bool) string {
	if secret {
		return "(secret)"
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	s := strings.TrimSpace(b.String())
	if utf8.RuneCountInString(s) > maxShown {
		r := []rune(s)
		s = string(r[:maxShown]) + "…"
	}
	return strings.ReplaceAll(s, "\n", " ")
}
