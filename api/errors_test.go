package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"tandem/access"
	"tandem/analytics"
	"tandem/apierror"
	"tandem/event"
	"tandem/eventstore"
	"tandem/governance"
	"tandem/imports"
	"tandem/statestore"
)

// TestErrorShape: each kind of error the packages below the API return becomes
// the code, status and field a client expects, wrapped or not.
func TestErrorShape(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("api: doing something: %w", err) }
	mbe := &http.MaxBytesError{Limit: 1 << 20}
	for _, tc := range []struct {
		err                  error
		status               int
		code, field, message string
	}{
		{apierror.Of(apierror.CodeRateLimited, "slow down"), 429, "rate_limited", "", "slow down"},
		{wrap(apierror.Field("limit", apierror.CodeInvalidField, "m")), 400, "invalid_field", "limit", "m"},
		{wrap(mbe), 413, "too_large", "", "request body over the limit of 1 MiB"},
		{&event.RequestError{Status: 413, Code: "too_many_events", Field: "batch", Message: "m"}, 413, "too_many_events", "batch", "m"},
		{wrap(&statestore.FieldError{Field: "role", Message: "unknown role"}), 400, "invalid_field", "role", "unknown role"},
		{&statestore.FieldError{Field: "cursor", Message: "x", Err: statestore.ErrBadCursor}, 400, "invalid_field", "cursor", ""},
		{wrap(eventstore.ErrBadCursor), 400, "invalid_field", "cursor", ""},
		{&analytics.FieldError{Field: "steps[1].event", Message: "m"}, 400, "invalid_field", "steps[1].event", "m"},
		{wrap(&imports.MappingError{Field: "mapping.timestamp", Message: "m"}), 400, "invalid_mapping", "mapping.timestamp", "m"},
		{wrap(statestore.ErrNotFound), 404, "not_found", "", ""},
		{eventstore.ErrNotFound, 404, "not_found", "", ""},
		{wrap(statestore.ErrConflict), 409, "conflict", "", ""},
		{wrap(imports.ErrBusy), 409, "import_running", "", ""},
		{fmt.Errorf("%w: source src_1 is pending; it may send data once approved", imports.ErrNotApproved), 403, "source_not_approved", "source", "source src_1 is pending; it may send data once approved"},
		{fmt.Errorf("%w: role \"analyst\" may not decide approvals", governance.ErrForbidden), 403, "forbidden", "", `role "analyst" may not decide approvals`},
		{governance.ErrForbidden, 403, "forbidden", "", "forbidden"},
		{access.ErrUnauthenticated, 401, "unauthenticated", "", ""},
		{wrap(statestore.ErrBusy), 503, "unavailable", "", ""},
		{wrap(context.DeadlineExceeded), 503, "unavailable", "", ""},
		{errors.New("disk on fire at /var/lib/tandem"), 500, "internal", "", "internal error"},
	} {
		e := errorShape(tc.err)
		if e.Status != tc.status || e.Code != tc.code || e.Field != tc.field || (tc.message != "" && e.Message != tc.message) {
			t.Errorf("errorShape(%v) = %d %s %q %q, want %d %s %q %q", tc.err, e.Status, e.Code, e.Field, e.Message, tc.status, tc.code, tc.field, tc.message)
		}
		if e.Message == "" {
			t.Errorf("errorShape(%v): no message", tc.err)
		}
		if apierror.Status(e.Code) != e.Status {
			t.Errorf("errorShape(%v): status %d, the table says %d for %s", tc.err, e.Status, apierror.Status(e.Code), e.Code)
		}
	}
	if errorShape(nil) != nil {
		t.Error("errorShape(nil) is not nil")
	}
	if e := errorShape(statestore.ErrBusy); e.RetryAfter != 1 {
		t.Errorf("unavailable without Retry-After")
	}
}
