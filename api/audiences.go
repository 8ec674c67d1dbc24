package api

import (
	"context"
	"net/http"
	"strconv"

	"tandem/access"
	"tandem/apierror"
	"tandem/audience"
)

// audienceRoutes are computed traits (see docs/audiences.md): defined by
// admin, marketing and analyst, read by whoever reads profiles.
func (a *API) audienceRoutes() {
	a.route("/api/v1/computed-traits", map[string]handler{"POST": a.need(access.ManageAudiences, a.createComputedTrait), "GET": a.need(access.ReadProfiles, a.listComputedTraits)})
	a.route("/api/v1/computed-traits/{id}", map[string]handler{"GET": a.need(access.ReadProfiles, a.getComputedTrait), "DELETE": a.need(access.ManageAudiences, a.deleteComputedTrait)})
	a.route("/api/v1/audiences", map[string]handler{"POST": a.need(access.ManageAudiences, a.createAudience), "GET": a.need(access.ReadProfiles, a.listAudiences)})
	a.route("/api/v1/audiences/{id}/members", map[string]handler{"GET": a.need(access.ReadProfiles, a.audienceMembers)})
}

func (a *API) audienceStore() (*audience.Audiences, error) {
	if a.opts.Audiences == nil {
		return nil, apierror.Of(apierror.CodeUnavailable, "audiences are not kept on this node")
	}
	return a.opts.Audiences, nil
}

func (a *API) createAudience(w http.ResponseWriter, r *http.Request) error {
	st, err := a.audienceStore()
	if err != nil {
		return err
	}
	var in struct {
		Name         string   `json:"name"`
		Rule         string   `json:"rule"`
		Destinations []string `json:"destinations"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	au, err := st.Create(r.Context(), in.Name, in.Rule, in.Destinations)
	if err != nil {
		return err
	}
	return writeJSON(w, 201, au)
}

func (a *API) listAudiences(w http.ResponseWriter, r *http.Request) error {
	st, err := a.audienceStore()
	if err != nil {
		return err
	}
	all, err := st.List(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, 200, map[string]any{"items": all})
}

func (a *API) audienceMembers(w http.ResponseWriter, r *http.Request) error {
	st, err := a.audienceStore()
	if err != nil {
		return err
	}
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return apierror.Field("limit", apierror.CodeInvalidField, "must be a positive whole number")
		}
		limit = n
	}
	items, next, err := st.Members(r.Context(), r.PathValue("id"), limit, r.URL.Query().Get("cursor"))
	if err != nil {
		return err
	}
	return writeJSON(w, 200, map[string]any{"items": items, "next": next})
}

func (a *API) traitStore() (*audience.Store, error) {
	if a.opts.Traits == nil {
		return nil, apierror.Of(apierror.CodeUnavailable, "computed traits are not kept on this node")
	}
	return a.opts.Traits, nil
}

// withComputed fills v's computed traits, when this node keeps them.
func (a *API) withComputed(ctx context.Context, v profileView) (profileView, error) {
	if a.opts.Traits == nil {
		return v, nil
	}
	vals, err := a.opts.Traits.Values(ctx, v.ID)
	if err != nil {
		return v, err
	}
	v.ComputedTraits = vals
	if a.opts.Audiences != nil {
		if v.Audiences, err = a.opts.Audiences.Of(ctx, v.ID); err != nil {
			return v, err
		}
	}
	return v, nil
}

func (a *API) createComputedTrait(w http.ResponseWriter, r *http.Request) error {
	st, err := a.traitStore()
	if err != nil {
		return err
	}
	var in struct {
		Name     string `json:"name"`
		Kind     string `json:"kind"`
		Event    string `json:"event"`
		Property string `json:"property"`
		Window   string `json:"window"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	t, err := st.Create(r.Context(), audience.Trait{Name: in.Name, Kind: in.Kind, Event: in.Event, Property: in.Property, Window: in.Window})
	if err != nil {
		return err
	}
	return writeJSON(w, 201, t)
}

func (a *API) listComputedTraits(w http.ResponseWriter, r *http.Request) error {
	st, err := a.traitStore()
	if err != nil {
		return err
	}
	all, err := st.List(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, 200, map[string]any{"items": all})
}

func (a *API) getComputedTrait(w http.ResponseWriter, r *http.Request) error {
	st, err := a.traitStore()
	if err != nil {
		return err
	}
	t, err := st.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, 200, t)
}

func (a *API) deleteComputedTrait(w http.ResponseWriter, r *http.Request) error {
	st, err := a.traitStore()
	if err != nil {
		return err
	}
	if err := st.Delete(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
