package api

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"tandem/access"
	"tandem/apierror"
	"tandem/audit"
	"tandem/imports"
)

// Bulk imports (see package imports and docs/import.md):
//
//	POST /imports               JSON {source, format, mapping, key, …} → the import, to send data to
//	POST /imports?source=…      the data itself (raw, or multipart with mapping and file parts) → the finished import
//	PUT  /imports/{id}/data     the data of an import created before → the finished import
//	GET  /imports/{id}          progress, resume point and the first row errors
//	GET  /imports/{id}/errors   every row error, by line, paginated

func (a *API) importRoutes() {
	a.route("/api/v1/imports", map[string]handler{"POST": a.need(access.RunImports, a.createImport)})
	a.route("/api/v1/imports/{id}", map[string]handler{"GET": a.need(access.RunImports, a.getImport)})
	a.route("/api/v1/imports/{id}/data", map[string]handler{"PUT": a.need(access.RunImports, a.importData)})
	a.route("/api/v1/imports/{id}/errors", map[string]handler{"GET": a.need(access.RunImports, a.listImportErrors)})
}

type createImportBody struct {
	Source    string          `json:"source"`
	Format    string          `json:"format"`
	Mapping   json.RawMessage `json:"mapping"` // an object, or a string holding YAML or JSON
	Key       string          `json:"key"`
	MaxErrors *int            `json:"maxErrors"`
	Delimiter string          `json:"delimiter"`
	Encoding  string          `json:"encoding"`
	Restart   bool            `json:"restart"`
	Size      int64           `json:"size"`
}

func (a *API) createImport(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Imports == nil {
		return apierror.ErrUnavailable
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var in createImportBody
		if err := decode(w, r, &in); err != nil {
			return err
		}
		mapping, err := mappingText(in.Mapping)
		if err != nil {
			return err
		}
		st, created, err := a.opts.Imports.Create(r.Context(), imports.Spec{
			Source: in.Source, Format: in.Format, Mapping: mapping, Key: in.Key, MaxErrors: in.MaxErrors,
			Delimiter: in.Delimiter, Encoding: in.Encoding, Restart: in.Restart, Size: in.Size,
		}, userFrom(r.Context()))
		if err != nil {
			return err
		}
		if created {
			a.recordImport(r, "import.create", st)
		}
		return writeJSON(w, map[bool]int{true: 201, false: 200}[created], st)
	}
	return a.oneShotImport(w, r, ct)
}

// oneShotImport creates an import from query parameters and runs the body
// through it: the raw data, or multipart/form-data with an optional
// "mapping" part followed by a "file" part.
func (a *API) oneShotImport(w http.ResponseWriter, r *http.Request, ct string) error {
	q := r.URL.Query()
	spec := imports.Spec{Source: q.Get("source"), Format: q.Get("format"), Key: q.Get("key"),
		Delimiter: q.Get("delimiter"), Encoding: q.Get("encoding"), Mapping: []byte(q.Get("mapping")),
		Restart: q.Get("restart") == "true"}
	if s := q.Get("maxErrors"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return apierror.Field("maxErrors", apierror.CodeInvalidField, "must be an integer, -1 for no limit")
		}
		spec.MaxErrors = &n
	}
	body := io.Reader(r.Body)
	size := r.ContentLength
	if ct == "multipart/form-data" {
		mr, err := r.MultipartReader()
		if err != nil {
			return apierror.Of(apierror.CodeInvalidBody, "not a multipart body")
		}
		size = -1
		body = nil
		for body == nil {
			part, err := mr.NextPart()
			if err != nil {
				return apierror.Field("file", apierror.CodeMissingField, `a multipart import needs a "file" part (after an optional "mapping" part)`)
			}
			switch part.FormName() {
			case "mapping":
				b, err := io.ReadAll(io.LimitReader(part, imports.MaxMappingBytes+1))
				if err != nil {
					return apierror.Of(apierror.CodeInvalidBody, "could not read the mapping part")
				}
				spec.Mapping = b
			case "file":
				body = part
			default:
				return apierror.Field(part.FormName(), apierror.CodeUnknownField, `parts are "mapping" and "file"; other parameters go in the query string`)
			}
		}
	}
	spec.Size = max(size, 0)
	st, created, err := a.opts.Imports.Create(r.Context(), spec, userFrom(r.Context()))
	if err != nil {
		return err
	}
	if created {
		a.recordImport(r, "import.create", st)
	}
	st, err = a.opts.Imports.Run(r.Context(), st.ID, a.rollingDeadline(w, body), size)
	if err != nil {
		return err
	}
	a.recordImport(r, "import.run", st)
	if err := a.recordImportErrorsRead(r, st); err != nil {
		return err
	}
	return writeJSON(w, map[bool]int{true: 201, false: 200}[created], st)
}

func (a *API) importData(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Imports == nil {
		return apierror.ErrUnavailable
	}
	st, err := a.opts.Imports.Run(r.Context(), r.PathValue("id"), a.rollingDeadline(w, r.Body), r.ContentLength)
	if err != nil {
		return err
	}
	a.recordImport(r, "import.run", st)
	if err := a.recordImportErrorsRead(r, st); err != nil {
		return err
	}
	return writeJSON(w, 200, st)
}

func (a *API) getImport(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Imports == nil {
		return apierror.ErrUnavailable
	}
	st, err := a.opts.Imports.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := a.recordImportErrorsRead(r, st); err != nil {
		return err
	}
	return writeJSON(w, 200, st)
}

func (a *API) listImportErrors(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Imports == nil {
		return apierror.ErrUnavailable
	}
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	errs, next, err := a.opts.Imports.Errors(r.Context(), r.PathValue("id"), limit, cursor)
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		// Row errors quote the rows' values.
		if err := a.recordRead(r, audit.Record{Action: "import.errors.read", Resource: "import/" + r.PathValue("id"),
			After: map[string]any{"count": len(errs)}}); err != nil {
			return err
		}
	}
	return writeJSON(w, 200, list[imports.RowError]{Items: errs, Next: next})
}

// mappingText accepts a mapping as a JSON object or as a string of YAML or
// JSON.
func mappingText(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, apierror.Field("mapping", apierror.CodeInvalidField, "must be an object or a string")
		}
		return []byte(s), nil
	}
	if raw[0] != '{' {
		return nil, apierror.Field("mapping", apierror.CodeInvalidType, "must be an object or a string holding YAML or JSON")
	}
	return raw, nil
}

// rollingDeadline lifts the server's whole-request read timeout for a long
// upload and instead gives each read a minute: a stalled client is cut
// off, a slow large one is not.
func (a *API) rollingDeadline(w http.ResponseWriter, body io.Reader) io.Reader {
	return &deadlineReader{r: body, rc: http.NewResponseController(w)}
}

type deadlineReader struct {
	r    io.Reader
	rc   *http.ResponseController
	last time.Time
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.last) > 5*time.Second {
		d.last = now
		_ = d.rc.SetReadDeadline(now.Add(time.Minute))
	}
	return d.r.Read(p)
}

// recordImport records an import created (only when it is new: asking
// again with the same key finds the same import and changes nothing) or
// run, with its counts; never its mapping or data.
func (a *API) recordImport(r *http.Request, action string, st imports.Status) {
	after := map[string]any{"id": st.ID, "sourceId": st.SourceID, "format": st.Format, "status": st.Status}
	if action == "import.run" {
		after["rowsImported"], after["rowsFailed"], after["rowsSkipped"] = st.RowsImported, st.RowsFailed, st.RowsSkipped
	}
	a.recordChange(r, audit.Record{Action: action, Resource: "import/" + st.ID, After: after})
}

// recordImportErrorsRead records that an import's first row errors, which
// quote the rows' values, are about to be shown.
func (a *API) recordImportErrorsRead(r *http.Request, st imports.Status) error {
	if len(st.Errors) == 0 {
		return nil
	}
	return a.recordRead(r, audit.Record{Action: "import.errors.read", Resource: "import/" + st.ID,
		After: map[string]any{"count": len(st.Errors)}})
}
