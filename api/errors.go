package api

import (
	"errors"

	"tandem/access"
	"tandem/analytics"
	"tandem/apierror"
	"tandem/event"
	"tandem/eventstore"
	"tandem/governance"
	"tandem/imports"
	"tandem/policy"
	"tandem/statestore"
)

// errorShape turns any error into the one error shape: the validation
// errors and sentinels of the packages below the API by their meaning,
// everything else through [apierror.From] (an *apierror.Error as it is,
// context errors as 503, the rest as 500 internal).
func errorShape(err error) *apierror.Error {
	if err == nil {
		return nil
	}
	var (
		ae  *apierror.Error
		sfe *statestore.FieldError
		afe *analytics.FieldError
		me  *imports.MappingError
		re  *event.RequestError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &re):
		return &apierror.Error{Status: re.Status, Code: re.Code, Field: re.Field, Message: re.Message}
	case errors.Is(err, statestore.ErrBadCursor), errors.Is(err, eventstore.ErrBadCursor):
		return apierror.Field("cursor", apierror.CodeInvalidField, "not a cursor this endpoint issued")
	case errors.As(err, &sfe):
		return apierror.Field(sfe.Field, apierror.CodeInvalidField, sfe.Message)
	case errors.As(err, &afe):
		return apierror.Field(afe.Field, apierror.CodeInvalidField, afe.Message)
	case errors.As(err, &me):
		return apierror.Field(me.Field, apierror.CodeInvalidMapping, me.Message)
	case errors.Is(err, statestore.ErrNotFound), errors.Is(err, eventstore.ErrNotFound):
		return apierror.Of(apierror.CodeNotFound, "no such resource")
	case errors.Is(err, statestore.ErrConflict):
		return apierror.Of(apierror.CodeConflict, "a resource with these values already exists")
	case errors.Is(err, imports.ErrBusy):
		return apierror.Of(apierror.CodeImportRunning, "this import is running; wait for it (GET /api/v1/imports/{id}) before sending its data again")
	case errors.Is(err, policy.ErrForbidden):
		return apierror.Of(apierror.CodeForbidden, apierror.After(err, policy.ErrForbidden))
	case errors.Is(err, policy.ErrDecided):
		return apierror.Of(apierror.CodeChangeDecided, apierror.After(err, policy.ErrDecided))
	case errors.Is(err, governance.ErrForbidden):
		return apierror.Of(apierror.CodeForbidden, apierror.After(err, governance.ErrForbidden))
	case errors.Is(err, access.ErrUnauthenticated):
		return apierror.Of(apierror.CodeUnauthenticated, "missing or invalid credentials")
	case errors.Is(err, imports.ErrNotApproved):
		return apierror.Field("source", apierror.CodeSourceNotApproved, apierror.After(err, imports.ErrNotApproved))
	case errors.Is(err, statestore.ErrBusy):
		e := *apierror.ErrUnavailable
		return &e
	}
	return apierror.From(err)
}
