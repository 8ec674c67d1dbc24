package duckdb

import (
	"bytes"
	"unsafe"

	"tandem/event"
)

// The value columns (schema version 4) hold the common conversion value
// properties of each event, properties.revenue and properties.value, as
// the text json_extract_string(raw, '$.properties."<name>"') gives for a
// number or a string (NULL otherwise), so that attribution reads a
// conversion's value from a narrow column instead of decompressing the
// JSON of every row group the conversions are spread over. Another value
// property is still read from the JSON. Append writes them (valuesOf);
// the migration fills them for the rows stored before, and FillTouches
// for the rows inserted by SQL without them (as it does the touch
// columns). Erasure, retention and compaction treat them as the rest of
// the row.
//
// A number is kept as its JSON text, which parses to the same float as
// DuckDB's rendering of it: attribution reads either with
// strconv.ParseFloat.
var valueProperties = []string{"revenue", "value"}

// valueColumns are the columns of valueProperties, in order.
var valueColumns = []string{"prop_revenue", "prop_value"}

// ValueColumn is the column holding the conversion value property prop,
// "" when there is none (read prop from the JSON).
func ValueColumn(prop string) string {
	for i, p := range valueProperties {
		if p == prop {
			return valueColumns[i]
		}
	}
	return ""
}

// optString is a string column's value; NULL if !ok.
type optString struct {
	s  string
	ok bool
}

// valuesOf writes raw's value columns, in valueColumns order, to dst.
func valuesOf(dst []optString, raw []byte) {
	clear(dst)
	if !mayHaveValues(raw) {
		return
	}
	// The members are read with the event scanner rather than decoded
	// into maps: this runs for every appended event. A key written twice
	// counts with its last value, as a decoder into a map would have it.
	var props []byte
	if !event.Members(raw, func(key, val []byte) {
		if keyEquals(key, "properties") {
			props = val
		}
	}) {
		return
	}
	propValues(dst, props)
}

// mayHaveValues reports whether raw holds a value property's name in
// quotes, as the fill in SQL (fillValuesSQL) looks for it: without one,
// the value columns are NULL whatever raw holds. One pass, from each 'v'
// (rare in JSON; every name has one).
func mayHaveValues(raw []byte) bool {
	for i := 0; ; i++ {
		j := bytes.IndexByte(raw[i:], 'v')
		if j < 0 {
			return false
		}
		i += j
		for k, q := range quotedValueProperties {
			if start := i - valueV[k]; start >= 0 && bytes.HasPrefix(raw[start:], q) {
				return true
			}
		}
	}
}

// quotedValueProperties are valueProperties in quotes.
var quotedValueProperties = func() [][]byte {
	var q [][]byte
	for _, p := range valueProperties {
		q = append(q, []byte(`"`+p+`"`))
	}
	return q
}()

// valueV is where the first 'v' is in each of quotedValueProperties.
var valueV = func() []int {
	var v []int
	for _, q := range quotedValueProperties {
		i := bytes.IndexByte(q, 'v')
		if i < 0 {
			panic("value property without a v: " + string(q))
		}
		v = append(v, i)
	}
	return v
}()

// propValues writes the value columns of the properties object props
// (the value of an event's last "properties" member, or nil) to dst,
// which is clear.
func propValues(dst []optString, props []byte) {
	if len(props) == 0 || props[0] != '{' {
		return
	}
	event.Members(props, func(key, val []byte) {
		for i, p := range valueProperties {
			if !keyEquals(key, p) {
				continue
			}
			switch {
			case len(val) == 0:
				dst[i] = optString{}
			case val[0] == '"':
				s, ok := event.String(val)
				dst[i] = optString{validUTF8(s), ok}
			case val[0] == '-' || (val[0] >= '0' && val[0] <= '9'):
				// The number's text in the event's JSON, not a copy:
				// the row's raw column holds the JSON the same way
				// (rawString), and the chunk writer copies both.
				dst[i] = optString{unsafe.String(&val[0], len(val)), true}
			default:
				dst[i] = optString{}
			}
		}
	})
}

// keyEquals reports whether the raw JSON key (quotes included) decodes
// to name, without decoding the common key that has no escapes.
func keyEquals(key []byte, name string) bool {
	if len(key) == len(name)+2 && string(key[1:len(key)-1]) == name {
		return true
	}
	if bytes.IndexByte(key, '\\') < 0 {
		return false
	}
	k, ok := event.String(key)
	return ok && k == name
}

// fillValuesSQL is the UPDATE filling the value columns from the JSON,
// to be completed with a condition on the rows to fill. A value that is
// no number or string gets its JSON text rather than NULL: neither parses
// as a number, so both count as no value.
func fillValuesSQL() string {
	q := "UPDATE events SET "
	cond := ""
	for i, p := range valueProperties {
		if i > 0 {
			q += ", "
			cond += " OR "
		}
		q += valueColumns[i] + " = json_extract_string(raw, " + quote(`$.properties."`+p+`"`) + ")"
		cond += "contains(raw, " + quote(`"`+p+`"`) + ")"
	}
	return q + " WHERE (" + cond + ") AND "
}
