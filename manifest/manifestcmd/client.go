package manifestcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// client talks to a node's management API.
type client struct {
	base, token string
	hc          *http.Client
}

// apiError is an error answer of the node, in the API's one error shape.
type apiError struct {
	Status  int
	Code    string
	Field   string
	Message string
}

func (e *apiError) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	s := fmt.Sprintf("%d %s: %s", e.Status, e.Code, msg)
	if e.Status == 401 {
		s += " (check --token / TANDEM_TOKEN)"
	}
	return s
}

// do sends a JSON request and returns the status and the body of a 2xx
// answer; any other answer is an *apiError.
func (c *client) do(ctx context.Context, method, path string, in any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, nil, fmt.Errorf("--addr: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("cannot reach the node at %s (--addr): %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Code, Message, Field string
			} `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		ae := &apiError{Status: resp.StatusCode, Code: e.Error.Code, Field: e.Error.Field, Message: e.Error.Message}
		if ae.Message == "" {
			ae.Message = strings.TrimSpace(string(b))
		}
		return resp.StatusCode, nil, ae
	}
	return resp.StatusCode, b, nil
}

// list reads every item of a list endpoint, following next when paged.
func (c *client) list(ctx context.Context, path string, paged bool) ([]map[string]any, error) {
	var out []map[string]any
	cursor := ""
	for {
		p := path
		if paged {
			p += "?limit=1000"
			if cursor != "" {
				p += "&cursor=" + url.QueryEscape(cursor)
			}
		}
		_, b, err := c.do(ctx, "GET", p, nil)
		if err != nil {
			return nil, err
		}
		var page struct {
			Items []map[string]any `json:"items"`
			Next  string           `json:"next"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, fmt.Errorf("GET %s: unexpected answer: %w", path, err)
		}
		out = append(out, page.Items...)
		if !paged || page.Next == "" {
			return out, nil
		}
		cursor = page.Next
	}
}
