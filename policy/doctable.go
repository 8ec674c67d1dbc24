package policy

import (
	"fmt"
	"slices"
	"strings"

	"tandem/access"
)

// DocTable renders the presets and the default rules by data category as
// the Markdown tables of docs/governance.md (TestDocTable keeps them the
// same).
func DocTable() string {
	var b strings.Builder
	b.WriteString("| kind | " + strings.Join(Presets, " | ") + " |\n|" + strings.Repeat(" --- |", len(Presets)+1) + "\n")
	list := func(rs []access.Role) string {
		if len(rs) == 0 {
			return "nobody"
		}
		return roleNames(rs)
	}
	for _, k := range Kinds {
		fmt.Fprintf(&b, "| `%s` |", k)
		for _, p := range Presets {
			r := presets[p][k]
			fmt.Fprintf(&b, " %s → **%s**; informs %s |", list(r.Propose), list(r.Approve), list(r.Inform))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n| data category | needs the approval of |\n| --- | --- |\n")
	cats := DefaultCategories()
	names := make([]string, 0, len(cats))
	for c := range cats {
		names = append(names, c)
	}
	slices.Sort(names)
	for _, c := range names {
		fmt.Fprintf(&b, "| `%s` | %s |\n", c, list(cats[c]))
	}
	return b.String()
}
