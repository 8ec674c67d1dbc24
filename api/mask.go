package api

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"tandem/governance"
	"tandem/privacy"
)

// Masking: a caller whose role lacks access.ReadPII gets every answer of
// the management API with personal data replaced by pseudonyms. It is one
// step over the whole answer (route wraps the ResponseWriter), so no
// endpoint can forget it:
//
//   - every e-mail address and every international phone number (+ and 7
//     to 15 digits) inside any JSON string, wherever it is (events,
//     profiles, quarantine payloads, import row errors, error messages);
//   - the value of an identifier object {"type":"email"|"phone", "value"};
//   - under "traits", "properties" and "context" (at any depth): the values
//     of the keys that hold contact data (email, phone, mobile, ip), and
//     under "traits" also names, address, birthday and username;
//   - the members of "traits" (also context.traits) and "properties" that
//     the classification (privacy.Classification: the defaults, the
//     config's privacy.categories, tracking plans' x-category) tags with a
//     personal data category (contact, sensitive, payment, identity,
//     location), whatever their value (a string, a number, an object).
//
// A pseudonym is "masked:KIND:" and the first 12 hex digits of an
// HMAC-SHA256 of the value under the node's mask key: the same value
// always gives the same pseudonym (so a masked answer can still be
// grouped and joined), but it cannot be turned back into the value, nor
// guessed by hashing candidate addresses without the key (the key is
// the installation's, in the state store, the same on every node). Profile ids,
// message ids and source ids are pseudonymous already and are kept.

var (
	emailRe = regexp.MustCompile(`[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`)
	phoneRe = regexp.MustCompile(`\+[0-9][0-9 ()./-]{5,22}[0-9]`)
)

// containerKeys hold the sender's free-form data.
var containerKeys = map[string]bool{"traits": true, "properties": true, "context": true}

// contactKeys are masked in any container; personKeys only under traits.
// Keys are compared lower-case without "_" and "-".
var (
	contactKeys = map[string]string{"email": "email", "emailaddress": "email", "phone": "phone", "phonenumber": "phone", "mobile": "phone", "ip": "ip"}
	personKeys  = map[string]string{"name": "name", "firstname": "name", "lastname": "name", "fullname": "name",
		"username": "name", "address": "address", "street": "address", "birthday": "birthday", "dateofbirth": "birthday"}
)

type masker struct {
	key   []byte
	class *privacy.Classification // nil: the fixed key lists alone
}

func (m masker) pseudonym(kind, v string) string {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte(strings.ToLower(strings.TrimSpace(v))))
	return "masked:" + kind + ":" + hex.EncodeToString(h.Sum(nil))[:12]
}

// text masks the e-mail addresses and phone numbers inside s.
func (m masker) text(s string) string {
	if strings.IndexByte(s, '@') >= 0 {
		s = emailRe.ReplaceAllStringFunc(s, func(v string) string { return m.pseudonym("email", v) })
	}
	if strings.IndexByte(s, '+') >= 0 {
		s = phoneRe.ReplaceAllStringFunc(s, func(v string) string {
			digits := 0
			for _, c := range v {
				if c >= '0' && c <= '9' {
					digits++
				}
			}
			if digits < 7 || digits > 15 {
				return v
			}
			return m.pseudonym("phone", v)
		})
	}
	return s
}

// obj is a JSON object with its members in their written order, so that a
// masked answer reads like the unmasked one.
type obj []member

type member struct {
	key string
	val any
}

func (o obj) get(k string) any {
	for _, m := range o {
		if m.key == k {
			return m.val
		}
	}
	return nil
}

// parse reads one JSON value: obj, []any, string, json.Number, bool or nil.
func parse(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		o := obj{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := parse(dec)
			if err != nil {
				return nil, err
			}
			o = append(o, member{k.(string), v})
		}
		_, err := dec.Token()
		return o, err
	case json.Delim('['):
		a := []any{}
		for dec.More() {
			v, err := parse(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := dec.Token()
		return a, err
	}
	return tok, nil
}

// encode writes v compactly, as encoding/json would.
func encode(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case obj:
		b.WriteByte('{')
		for i, m := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(m.key)
			b.Write(k)
			b.WriteByte(':')
			encode(b, m.val)
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			encode(b, x)
		}
		b.WriteByte(']')
	case json.Number:
		b.WriteString(v.String())
	default:
		x, _ := json.Marshal(v)
		b.Write(x)
	}
}

// value masks a JSON value (see parse); inContainer and inTraits say
// whether it is under a container key, parent is the key v is the value
// of ("" for none or an array's element).
func (m masker) value(v any, inContainer, inTraits bool, parent string) any {
	switch v := v.(type) {
	case string:
		return m.text(v)
	case []any:
		for i := range v {
			v[i] = m.value(v[i], inContainer, inTraits, "")
		}
		return v
	case obj:
		idType, _ := v.get("type").(string)
		for i, mem := range v {
			k, x := mem.key, mem.val
			if k == "value" && (idType == "email" || idType == "phone") {
				if s, ok := x.(string); ok {
					v[i].val = m.pseudonym(idType, s)
					continue
				}
			}
			// An identifier whose type is a trait the classification tags
			// personal (crm_id: identity).
			if k == "value" && idType != "" {
				if cat := m.class.Category("traits", idType); cat != "" && governance.Personal([]string{cat}) {
					if s, ok := x.(string); ok {
						v[i].val = m.pseudonym(cat, s)
						continue
					}
				}
			}
			if inContainer {
				norm := strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(k))
				kind, ok := contactKeys[norm]
				if !ok && inTraits {
					kind, ok = personKeys[norm]
				}
				if ok {
					switch s := x.(type) {
					case string:
						if s != "" {
							v[i].val = m.pseudonym(kind, s)
						}
						continue
					case json.Number:
						v[i].val = m.pseudonym(kind, s.String())
						continue
					}
				}
			}
			if (parent == "traits" || parent == "properties") && x != nil {
				if cat := m.class.Category(parent, k); cat != "" && governance.Personal([]string{cat}) {
					if s, ok := x.(string); ok {
						if s != "" {
							v[i].val = m.pseudonym(cat, s)
						}
					} else {
						var b bytes.Buffer
						encode(&b, x)
						v[i].val = m.pseudonym(cat, b.String())
					}
					continue
				}
			}
			v[i].val = m.value(x, inContainer || containerKeys[k], inTraits || k == "traits", k)
		}
		return v
	}
	return v
}

// body masks an answer: JSON (one value or several, as NDJSON) value by
// value, keeping the members' order, anything else as text.
func (m masker) body(contentType string, b []byte) []byte {
	if strings.Contains(contentType, "json") {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var out bytes.Buffer
		ok := true
		for {
			v, err := parse(dec)
			if err == io.EOF {
				break
			}
			if err != nil {
				ok = false
				break
			}
			encode(&out, m.value(v, false, false, ""))
			out.WriteByte('\n')
		}
		if ok {
			return out.Bytes()
		}
	}
	return []byte(m.text(string(b)))
}

// maskWriter holds an answer back until the handler is done, then writes
// it masked.
type maskWriter struct {
	http.ResponseWriter
	m      masker
	status int
	buf    bytes.Buffer
}

func (w *maskWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *maskWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.buf.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (w *maskWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *maskWriter) finish() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	b := w.m.body(w.Header().Get("Content-Type"), w.buf.Bytes())
	if w.Header().Get("Content-Length") != "" {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	}
	w.ResponseWriter.WriteHeader(w.status)
	_, _ = w.ResponseWriter.Write(b)
}

// masker returns the masker keyed with Options.MaskKey, else with the
// installation's secret "mask" (access.Store.Secret), read once, with the
// classification now. Without the key or the classification no answer
// goes out: masking fails closed.
func (a *API) masker(ctx context.Context) (masker, error) {
	var class *privacy.Classification
	if a.opts.Classifier != nil {
		c, err := a.opts.Classifier.Current(ctx)
		if err != nil {
			return masker{}, err
		}
		class = c
	} else {
		class = privacy.NewClassification(privacy.Settings{})
	}
	if len(a.opts.MaskKey) > 0 {
		return masker{key: a.opts.MaskKey, class: class}, nil
	}
	a.maskMu.Lock()
	defer a.maskMu.Unlock()
	if a.maskKey == nil {
		if a.opts.Access == nil {
			return masker{}, errors.New("api: no mask key")
		}
		k, err := a.opts.Access.Secret(ctx, "mask")
		if err != nil {
			return masker{}, err
		}
		a.maskKey = k
	}
	return masker{key: a.maskKey, class: class}, nil
}
