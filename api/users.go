package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"tandem/access"
	"tandem/audit"
	"tandem/policy"
)

// New users under the decision rights (kind users): a role the rules let
// propose users creates one directly when its own approval is all the
// change needs (IT under it-led), and otherwise files a change request;
// granting admin always needs an admin (policy.Rules.AssessUser).

// userProposal is a proposed user as its change request keeps it: the
// token, shown once to the proposer, only as its hash.
type userProposal struct {
	Name      string      `json:"name"`
	Role      access.Role `json:"role"`
	TokenHash string      `json:"tokenHash"`
}

// proposeUser files a change request for a new user and answers 202 with
// it and the user's token, which works once the change is approved.
func (a *API) proposeUser(w http.ResponseWriter, r *http.Request, name string, role access.Role, as policy.Assessment) error {
	token, err := access.NewToken()
	if err != nil {
		return err
	}
	c, err := a.propose(r.Context(), policy.Proposal{Kind: policy.Users, Action: policy.Create, Subject: "user:" + name,
		After: map[string]any{"name": name, "role": role}, Payload: userProposal{Name: name, Role: role, TokenHash: access.TokenHash(token)},
		Assessment: as})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, map[string]any{"change": c, "token": token})
}

// applyUserChange creates an approved user, with the token its proposer
// was given.
func (a *API) applyUserChange(ctx context.Context, d policy.Decided) error {
	if d.Decision != policy.Approve {
		return nil
	}
	if d.Change.Action != policy.Create {
		return fmt.Errorf("change %s: cannot %s a user", d.Change.ID, d.Change.Action)
	}
	var p userProposal
	if err := json.Unmarshal(d.Payload, &p); err != nil {
		return fmt.Errorf("change %s: payload: %w", d.Change.ID, err)
	}
	if p.Role == access.RoleAdmin && !adminApproved(d) {
		// policy.Rules.AssessUser made admin one of the roles it needs,
		// so an admin decided; refuse anything else.
		return errors.New("granting admin needs an admin's approval")
	}
	u, err := a.opts.Access.CreateUserWithTokenHash(ctx, p.Name, p.Role, p.TokenHash)
	if err != nil {
		return err
	}
	a.recordChangeCtx(ctx, audit.Record{Action: "user.create", Resource: "user/" + u.ID, ChangeRequest: d.Change.ID,
		After: map[string]any{"id": u.ID, "role": u.Role, "proposedBy": d.Proposer.ID}})
	return nil
}

// adminApproved reports whether an admin proposed or approved d's change
// (this decision included).
func adminApproved(d policy.Decided) bool {
	if d.By.Role == access.RoleAdmin || d.Proposer.Role == access.RoleAdmin {
		return true
	}
	for _, a := range d.Change.Approvals {
		if a.Role == access.RoleAdmin && a.Decision == policy.Approve {
			return true
		}
	}
	return false
}
