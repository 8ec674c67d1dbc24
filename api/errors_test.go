package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tandem/access"
	"tandem/apierror"
	"tandem/event"
	"tandem/eventstore/duckdb"
	"tandem/statestore/sqlite/sqlitetest"
)

type errorBody struct {
	Error struct {
		Code    string           `json:"code"`
		Message string           `json:"message"`
		Field   string           `json:"field"`
		Matches []apierror.Match `json:"matches"`
	} `json:"error"`
}

type apiClient struct {
	t     *testing.T
	url   string
	token string
}

func (c apiClient) do(method, path string, body io.Reader) (*http.Response, []byte) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, body)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// wantError checks the one error shape, with status and code.
func (c apiClient) wantError(resp *http.Response, b []byte, status int, code string) errorBody {
	c.t.Helper()
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != status || e.Error.Code != code || e.Error.Message == "" ||
		resp.Header.Get("Content-Type") != "application/json" {
		c.t.Errorf("%s %s: %d %s %q, want %d %s in the error shape", resp.Request.Method, resp.Request.URL.Path,
			resp.StatusCode, resp.Header.Get("Content-Type"), b, status, code)
	}
	return e
}

func newTestAPI(t *testing.T) (apiClient, *duckdb.Store) {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	if err := db.Migrate(ctx, access.Migrations()...); err != nil {
		t.Fatal(err)
	}
	events, err := duckdb.Open(filepath.Join(t.TempDir(), "events.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	acc := access.NewStore(db)
	_, token, err := acc.CreateUser(ctx, "ada", access.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Access: acc, Events: events}))
	t.Cleanup(srv.Close)
	return apiClient{t: t, url: srv.URL, token: token}, events
}

// TestAmbiguousEventListsItsMatches: a messageId two sources used is a 409
// that names both, so the client can ask again with one of them.
func TestAmbiguousEventListsItsMatches(t *testing.T) {
	c, events := newTestAPI(t)
	t0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	var batch []event.Event
	for _, src := range []string{"src_web", "src_app"} {
		batch = append(batch, event.Event{SourceID: src, MessageID: "m-1", Type: "track", Name: "Signed Up", UserID: "u1",
			Timestamp: t0, ReceivedAt: t0, Raw: []byte(`{"type":"track","event":"Signed Up","userId":"u1"}`)})
	}
	if _, err := events.Append(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	resp, b := c.do("GET", "/api/v1/events/m-1", nil)
	e := c.wantError(resp, b, 409, "ambiguous")
	if e.Error.Field != "source" {
		t.Errorf("field %q, want source", e.Error.Field)
	}
	var got []string
	for _, m := range e.Error.Matches {
		got = append(got, m.Source+"/"+m.MessageID)
	}
	slices.Sort(got)
	if want := []string{"src_app/m-1", "src_web/m-1"}; !slices.Equal(got, want) {
		t.Errorf("matches %v, want %v (%s)", got, want, b)
	}
	// Each match, asked for, is the one event.
	for _, m := range e.Error.Matches {
		resp, b := c.do("GET", "/api/v1/events/"+m.MessageID+"?source="+m.Source, nil)
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"sourceId":"`+m.Source+`"`) {
			t.Errorf("match %v: %d %s", m, resp.StatusCode, b)
		}
	}
}

// onlyReader hides the length of a body, so it is sent chunked.
type onlyReader struct{ io.Reader }

// TestOversizedBodyIs413: a management JSON body over 1 MiB is refused with
// 413 too_large naming the limit, whether its length is announced or not;
// one just under the limit is read.
func TestOversizedBodyIs413(t *testing.T) {
	c, _ := newTestAPI(t)
	big := []byte(`{"name":"` + strings.Repeat("x", MaxBodyBytes) + `","role":"analyst"}`)
	for name, body := range map[string]io.Reader{"with Content-Length": bytes.NewReader(big), "chunked": onlyReader{bytes.NewReader(big)}} {
		resp, b := c.do("POST", "/api/v1/users", body)
		e := c.wantError(resp, b, 413, "too_large")
		if !strings.Contains(e.Error.Message, "1 MiB") {
			t.Errorf("%s: message %q does not say the limit", name, e.Error.Message)
		}
	}
	// Under the limit, the body is decoded (and here refused for its
	// content, not its size).
	fits := []byte(`{"name":"bob","role":"analyst","x":"` + strings.Repeat("y", MaxBodyBytes-100) + `"}`)
	resp, b := c.do("POST", "/api/v1/users", bytes.NewReader(fits))
	if e := c.wantError(resp, b, 400, "unknown_field"); e.Error.Field != "x" {
		t.Errorf("field %q, want x", e.Error.Field)
	}
	resp, b = c.do("POST", "/api/v1/users", strings.NewReader(`{"name":"bob","role":"analyst"} {"name":"eve"}`))
	c.wantError(resp, b, 400, "invalid_json")
	resp, b = c.do("POST", "/api/v1/users", strings.NewReader(`{"name":"bob","role":"analyst"}`+"\n"))
	if resp.StatusCode != 201 {
		t.Errorf("a good body: %d %s", resp.StatusCode, b)
	}
}

// TestUnknownPathsAndMethods: under /api/v1 every miss is in the error
// shape, a 405 with Allow.
func TestUnknownPathsAndMethods(t *testing.T) {
	c, _ := newTestAPI(t)
	resp, b := c.do("GET", "/api/v1/nothing-here", nil)
	if e := c.wantError(resp, b, 404, "not_found"); !strings.Contains(e.Error.Message, "openapi.json") {
		t.Errorf("404 message %q does not point at the OpenAPI document", e.Error.Message)
	}
	resp, b = c.do("DELETE", "/api/v1/users", nil)
	c.wantError(resp, b, 405, "method_not_allowed")
	if got := resp.Header.Get("Allow"); got != "GET, POST" {
		t.Errorf("Allow %q", got)
	}
	resp, b = c.do("POST", "/api/v1/openapi.json", nil)
	c.wantError(resp, b, 405, "method_not_allowed")
	if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
		t.Errorf("openapi.json Allow %q", got)
	}
}

// TestOpenAPIListsEveryCode: the served document's Error.code enum is the
// table, and it documents the matches of a 409.
func TestOpenAPIListsEveryCode(t *testing.T) {
	c, _ := newTestAPI(t)
	resp, b := c.do("GET", "/api/v1/openapi.json", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	var doc struct {
		Components struct {
			Schemas struct {
				Error struct {
					Properties struct {
						Error struct {
							Properties struct {
								Code struct {
									Enum []string `json:"enum"`
								} `json:"code"`
								Matches *struct {
									Type string `json:"type"`
								} `json:"matches"`
							} `json:"properties"`
						} `json:"error"`
					} `json:"properties"`
				} `json:"Error"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	props := doc.Components.Schemas.Error.Properties.Error.Properties
	var want []string
	for _, e := range apierror.Table() {
		want = append(want, e.Code)
	}
	if !slices.Equal(props.Code.Enum, want) {
		t.Errorf("served Error.code enum %v, want the table's %v: run go generate ./apierror", props.Code.Enum, want)
	}
	if props.Matches == nil || props.Matches.Type != "array" {
		t.Errorf("Error.matches not documented")
	}
}
