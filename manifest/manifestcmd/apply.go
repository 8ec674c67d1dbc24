package manifestcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"tandem/manifest"
)

// applier plans and applies one manifest.
type applier struct {
	c      *client
	out    io.Writer
	errw   io.Writer
	file   string
	getenv func(string) (string, bool)
}

// change is a change request as the node shows it.
type change struct {
	ID       string   `json:"id"`
	Kind     string   `json:"kind"`
	Action   string   `json:"action"`
	Subject  string   `json:"subject"`
	Needs    []string `json:"needs"`
	Informed []string `json:"informed"`
	State    string   `json:"state"`
}

// preview is what POST /api/v1/changes/preview answers.
type preview struct {
	Needs    []string `json:"needs"`
	Informed []string `json:"informed"`
	Direct   bool     `json:"direct"`
}

func (a *applier) run(ctx context.Context, m *manifest.Manifest, dry, prune bool) int {
	st, err := readState(ctx, a.c)
	if err != nil {
		fmt.Fprintf(a.errw, "tandem apply: %v\n", err)
		return 1
	}
	keep := map[string]bool{}
	if _, b, err := a.c.do(ctx, "GET", "/api/v1/me", nil); err == nil {
		var me struct{ ID string }
		if json.Unmarshal(b, &me) == nil && me.ID != "" {
			keep[me.ID] = true // --prune never deletes the user it runs as
		}
	}
	plan, err := manifest.Diff(m, st, manifest.Options{Prune: prune, Getenv: a.getenv, Keep: keep})
	if err != nil {
		fmt.Fprintln(a.errw, err)
		return 2
	}
	pending := a.pendingChanges(ctx)
	// A change already waiting for approval is not filed again.
	var ops []*manifest.Op
	waiting := 0
	for _, op := range plan.Ops {
		if ch := pendingFor(pending, op); ch != nil {
			waiting++
			fmt.Fprintf(a.out, "%s: change request %s is pending (needs %s); not filed again\n", op.Label(), ch.ID, roles(ch.Needs))
			continue
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		fmt.Fprintln(a.out, "no changes")
		return 0
	}
	if dry {
		a.printPlan(ctx, ops)
		return 0
	}
	return a.apply(ctx, st, ops)
}

// pendingFor is the pending change request of op's resource and kind,
// nil if none.
func pendingFor(pending map[string][]change, op *manifest.Op) *change {
	if op.Kind.ChangeKind == "" {
		return nil
	}
	subject := ""
	switch {
	case op.Kind.Singleton:
		subject = op.Kind.ChangeKind // a setting's change names its kind
	case op.Kind == manifest.Users && op.Action == manifest.Create:
		subject = "user:" + op.Name // a user held for approval does not exist yet
	case op.Have != nil:
		subject = op.Have.ID
	}
	if subject == "" {
		return nil
	}
	tool := op.Kind == manifest.Sources || op.Kind == manifest.Destinations
	for _, ch := range pending[subject] {
		if ch.Kind == op.Kind.ChangeKind || tool && ch.Kind == "data_categories" {
			return &ch
		}
	}
	return nil
}

// pendingChanges are the node's pending change requests by subject; none
// when the node has no change requests.
func (a *applier) pendingChanges(ctx context.Context) map[string][]change {
	out := map[string][]change{}
	items, err := a.c.list(ctx, "/api/v1/changes?state=pending", false)
	if err != nil {
		return out
	}
	for _, it := range items {
		b, _ := json.Marshal(it)
		var ch change
		if json.Unmarshal(b, &ch) == nil && ch.Subject != "" {
			out[ch.Subject] = append(out[ch.Subject], ch)
		}
	}
	return out
}

func (a *applier) printPlan(ctx context.Context, ops []*manifest.Op) {
	previews := true
	for _, op := range ops {
		for _, l := range op.Describe() {
			fmt.Fprintln(a.out, l)
		}
		if op.Kind.ChangeKind == "" || !previews {
			continue
		}
		p, err := a.preview(ctx, op)
		var ae *apiError
		switch {
		case errors.As(err, &ae) && (ae.Status == 404 || ae.Status == 405):
			previews = false
			fmt.Fprintln(a.out, "    (this node does not preview approvals: POST /api/v1/changes/preview is missing)")
		case err != nil:
			fmt.Fprintf(a.out, "    approval: could not preview: %v\n", err)
		case p.Direct || len(p.Needs) == 0:
			fmt.Fprintf(a.out, "    approval: none needed%s\n", informed(p.Informed))
		default:
			fmt.Fprintf(a.out, "    approval: needs %s%s\n", roles(p.Needs), informed(p.Informed))
		}
	}
	c, ch, d := (&manifest.Plan{Ops: ops}).Counts()
	fmt.Fprintf(a.out, "plan: %d to create, %d to change, %d to delete (dry run: nothing changed)\n", c, ch, d)
}

func (a *applier) preview(ctx context.Context, op *manifest.Op) (preview, error) {
	action := map[manifest.Action]string{manifest.Create: "create", manifest.Change: "update", manifest.Delete: "delete"}[op.Action]
	kind := op.Kind.ChangeKind
	if op.Action == manifest.Change && (op.Kind == manifest.Sources || op.Kind == manifest.Destinations) {
		for _, c := range op.Changes {
			if strings.HasPrefix(c.Key, "dataCategories") {
				kind = "data_categories" // a tool's data categories have rules of their own
			}
		}
	}
	req := map[string]any{"kind": kind, "action": action}
	if op.Have != nil && op.Have.ID != "" {
		req["subject"] = op.Have.ID
	}
	if op.Want != nil {
		after := map[string]any{}
		for k, v := range op.Want.Fields {
			after[k] = v
		}
		req["after"] = after
	}
	var p preview
	_, b, err := a.c.do(ctx, "POST", "/api/v1/changes/preview", req)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("unexpected answer: %w", err)
	}
	return p, nil
}

func roles(rs []string) string {
	if len(rs) == 0 {
		return "no one"
	}
	return strings.Join(rs, ", ")
}

func informed(rs []string) string {
	if len(rs) == 0 {
		return ""
	}
	return "; informs " + strings.Join(rs, ", ")
}

// apply carries out the ops in order and stops at the first that fails.
func (a *applier) apply(ctx context.Context, st *manifest.State, ops []*manifest.Op) int {
	for _, op := range ops {
		if err := manifest.CheckVars(a.file, op, a.getenv); err != nil {
			fmt.Fprintln(a.errw, err)
			fmt.Fprintln(a.errw, "tandem apply: nothing changed")
			return 2
		}
	}
	var done, filed int
	count := map[manifest.Action]int{}
	for _, op := range ops {
		ch, applied, err := a.step(ctx, st, op)
		if err != nil {
			var me *manifest.Error
			if errors.As(err, &me) {
				fmt.Fprintln(a.errw, me)
			} else {
				fmt.Fprintf(a.errw, "tandem apply: %s %s: %v\n", op.Action, op.Label(), err)
				var ae *apiError
				if errors.As(err, &ae) && op.Action != manifest.Create && (ae.Status == 404 || ae.Status == 405 || ae.Code == "unknown_field") {
					fmt.Fprintln(a.errw, "tandem apply: this node's API cannot make that change (docs/configuration-as-code.md#what-apply-can-change)")
				}
			}
			fmt.Fprintf(a.errw, "tandem apply: stopped after %d of %d changes; fix the problem and apply again (what is done stays done)\n", done, len(ops))
			return 1
		}
		done++
		if applied {
			count[op.Action]++
		}
		if ch != nil {
			filed++
			fmt.Fprintf(a.out, "%s: change request %s filed, needs %s\n", op.Label(), ch.ID, roles(ch.Needs))
		}
	}
	fmt.Fprintf(a.out, "applied: %d created, %d changed, %d deleted", count[manifest.Create], count[manifest.Change], count[manifest.Delete])
	if filed > 0 {
		fmt.Fprintf(a.out, "; %d held for approval as change requests", filed)
	}
	fmt.Fprintln(a.out)
	return 0
}

// step carries out one op. It returns the change request the node filed
// for it, if any, and whether the op took effect (a creation held for
// approval does: the resource exists, pending; a change or a deletion
// held does not).
func (a *applier) step(ctx context.Context, st *manifest.State, op *manifest.Op) (*change, bool, error) {
	k := op.Kind
	if op.Action == manifest.Delete {
		status, b, err := a.c.do(ctx, "DELETE", k.Path+"/"+url.PathEscape(op.Have.ID), nil)
		if err != nil {
			return nil, false, err
		}
		if ch := a.held(ctx, status, b); ch != nil {
			return ch, false, nil
		}
		fmt.Fprintf(a.out, "deleted %s\n", op.Label())
		return nil, true, nil
	}
	body, err := manifest.Body(a.file, op, st, a.getenv)
	if err != nil {
		return nil, false, err
	}
	var method, path string
	switch {
	case k.Singleton:
		method, path = "PUT", k.Path
	case k.Update == manifest.Put:
		method, path = "PUT", k.Path+"/"+url.PathEscape(op.Name)
	case op.Action == manifest.Create:
		method, path = "POST", k.Path
	case k.Update == manifest.Replace:
		status, b, err := a.c.do(ctx, "DELETE", k.Path+"/"+url.PathEscape(op.Have.ID), nil)
		if err != nil {
			return nil, false, err
		}
		if ch := a.held(ctx, status, b); ch != nil {
			return ch, false, nil
		}
		method, path = "POST", k.Path
	default:
		method, path = "PATCH", k.Path+"/"+url.PathEscape(op.Have.ID)
	}
	status, b, err := a.c.do(ctx, method, path, body)
	var ae *apiError
	if k.Singleton && errors.As(err, &ae) && (ae.Status == 404 || ae.Status == 405) {
		// A node of a version before PUT of its settings.
		return nil, false, fmt.Errorf("this node takes its %s from its config file, not from the API: set them under %s: in the file tandem serve --config reads (docs/configuration-as-code.md), and restart it", k.Noun, k.Key)
	}
	if err != nil {
		return nil, false, err
	}
	if ch := a.held(ctx, status, b); ch != nil {
		var res struct{ Token string }
		if json.Unmarshal(b, &res) == nil && res.Token != "" {
			// A user held for approval: its token works once approved.
			fmt.Fprintf(a.out, "%s: token %s (shown only this once; it works once the change is approved)\n", op.Label(), res.Token)
		}
		return ch, false, nil
	}
	var res map[string]any
	_ = json.Unmarshal(b, &res)
	verb := map[manifest.Action]string{manifest.Create: "created", manifest.Change: "changed"}[op.Action]
	id, _ := res["id"].(string)
	if k == manifest.TrackingPlans {
		id, _ = res["sourceId"].(string)
	}
	if !k.Singleton && id != "" {
		st.Created(&manifest.Resource{Kind: k, Name: op.Name, ID: id})
	}
	line := fmt.Sprintf("%s %s", verb, op.Label())
	if id != "" {
		line += " (" + id + ")"
	}
	if key, _ := res["writeKey"].(string); key != "" {
		line += "; write key " + key + " (shown only this once)"
	}
	if tok, _ := res["token"].(string); tok != "" {
		line += "; token " + tok + " (shown only this once)"
	}
	if appr, _ := res["approval"].(string); appr != "" && appr != "approved" {
		line += "; approval " + appr
	}
	fmt.Fprintln(a.out, line)
	if chID, _ := res["change"].(string); chID != "" {
		return a.changeByID(ctx, chID), true, nil
	}
	return nil, true, nil
}

// held is the change request of a 202 answer, nil for any other.
func (a *applier) held(ctx context.Context, status int, b []byte) *change {
	if status != 202 {
		return nil
	}
	var res struct {
		Change json.RawMessage `json:"change"`
	}
	if json.Unmarshal(b, &res) != nil || len(res.Change) == 0 {
		return &change{ID: "(unnamed)"}
	}
	var id string
	if json.Unmarshal(res.Change, &id) == nil {
		return a.changeByID(ctx, id)
	}
	var ch change
	_ = json.Unmarshal(res.Change, &ch)
	return &ch
}

// changeByID reads a change request, for the approvals it needs.
func (a *applier) changeByID(ctx context.Context, id string) *change {
	ch := &change{ID: id}
	if _, b, err := a.c.do(ctx, "GET", "/api/v1/changes/"+url.PathEscape(id), nil); err == nil {
		_ = json.Unmarshal(b, ch)
		ch.ID = id
	}
	return ch
}
