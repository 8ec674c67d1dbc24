package api

import (
	"context"
	"net/http"

	"tandem/access"
	"tandem/apierror"
	"tandem/audience"
)

// audienceRoutes are computed traits (see docs/audiences.md): defined by
// admin, marketing and analyst, read by whoever reads profiles.
func (a *API) audienceRoutes() {
	a.route("/api/v1/computed-traits", map[string]handler{"POST": a.need(access.ManageAudiences, a.createComputedTrait), "GET": a.need(access.ReadProfiles, a.listComputedTraits)})
	a.route("/api/v1/computed-traits/{id}", map[string]handler{"GET": a.need(access.ReadProfiles, a.getComputedTrait), "DELETE": a.need(access.ManageAudiences, a.deleteComputedTrait)})
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
