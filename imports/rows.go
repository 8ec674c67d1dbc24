package imports

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// RowError is a row that could not become an event: where it is in the
// file and why. The row itself is kept in the quarantine.
type RowError struct {
	Line      int    `json:"line"`             // line in the file where the row starts, from 1
	Column    string `json:"column,omitempty"` // the column (CSV header name or NDJSON field) at fault, if one is
	Code      string `json:"code"`             // e.g. invalid_timestamp, missing_identifier, column_count
	Message   string `json:"message"`
	MessageID string `json:"messageId"` // the row's stable id, as in its quarantine entry
}

func (e *RowError) Error() string {
	if e.Column != "" {
		return fmt.Sprintf("line %d, column %s: %s", e.Line, e.Column, e.Message)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Message)
}

// cell is one value of a row.
type cell struct {
	text string // decoded text: the CSV field, an NDJSON string, number or boolean literal, or an object's JSON
	json []byte // NDJSON only: the value as JSON
	ok   bool   // present, not JSON null
}

// row is one row read from a file. Its slices are valid until the next
// read.
type row struct {
	line  int
	raw   []byte // the row as in the file, without its line ending
	cells []cell // CSV: by header position; NDJSON with a mapping: by path slot
	err   *RowError
}

// rowReader reads the rows of a file in order.
type rowReader interface {
	// next returns the next row, io.EOF at the end, or the input's error.
	next() (*row, error)
	// position is the input offset just past the last row returned and
	// the CRC-64 of the input up to there: a resume point.
	position() (int64, uint64)
}

var crcTable = crc64.MakeTable(crc64.ECMA)

// maxRawRow bounds the bytes of one row kept for the quarantine.
const maxRawRow = 64 << 10

// stripBOM drops a UTF-8 byte order mark at the start of r.
func stripBOM(r *bufio.Reader) {
	if b, err := r.Peek(3); err == nil && bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = r.Discard(3)
	}
}

// tracker passes input through to the CSV parser and remembers the bytes
// not yet released, so that each record's original bytes can be cut out
// by offset, and keeps the CRC of released bytes.
type tracker struct {
	r     io.Reader
	buf   []byte
	start int   // buf[start:] is unreleased
	base  int64 // input offset of buf[start]
	crc   uint64
}

func (t *tracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.buf = append(t.buf, p[:n]...)
	return n, err
}

// span returns the input bytes [from, to), both at or after the release
// point.
func (t *tracker) span(from, to int64) []byte {
	i, j := t.start+int(from-t.base), t.start+int(to-t.base)
	if i < t.start || j > len(t.buf) || i > j {
		return nil
	}
	return t.buf[i:j]
}

// release forgets input before offset to.
func (t *tracker) release(to int64) {
	n := int(to - t.base)
	if n <= 0 {
		return
	}
	t.crc = crc64.Update(t.crc, crcTable, t.buf[t.start:t.start+n])
	t.start += n
	t.base = to
	if t.start > 256<<10 && t.start > len(t.buf)/2 {
		m := copy(t.buf, t.buf[t.start:])
		t.buf = t.buf[:m]
		t.start = 0
	}
}

// csvReader reads RFC 4180 CSV with a header row.
type csvReader struct {
	cr      *csv.Reader
	t       *tracker
	header  []string
	enc     string
	cells   []cell
	r       row
	records int // records read, header included
}

func newCSVReader(in io.Reader, opts CSVOptions) (*csvReader, error) {
	br := bufio.NewReaderSize(in, 64<<10)
	stripBOM(br)
	t := &tracker{r: br}
	cr := csv.NewReader(t)
	cr.Comma = opts.Delimiter
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	c := &csvReader{cr: cr, t: t, enc: opts.Encoding}
	rec, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &MappingError{Field: "file", Message: "is empty: a CSV file starts with a header row"}
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, &MappingError{Field: "file", Message: "header row: " + pe.Error()}
		}
		return nil, err
	}
	c.records++
	for i, f := range rec {
		s, ok := decodeText(f, c.enc)
		if !ok {
			return nil, &MappingError{Field: "file", Message: fmt.Sprintf("header column %d is not valid UTF-8; is the file Latin-1? (set csv.encoding or --encoding)", i+1)}
		}
		c.header = append(c.header, strings.TrimSpace(s))
	}
	t.release(cr.InputOffset())
	return c, nil
}

func (c *csvReader) position() (int64, uint64) { return c.t.base, c.t.crc }

func (c *csvReader) next() (*row, error) {
	prev := c.t.base
	rec, err := c.cr.Read()
	off := c.cr.InputOffset()
	var pe *csv.ParseError
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		return nil, io.EOF
	case errors.As(err, &pe) && !errors.Is(err, csv.ErrFieldCount):
		// A syntax error: the record is unusable, its bytes are kept.
		raw := trimEOL(c.t.span(prev, off))
		c.t.release(off)
		c.records++
		c.r = row{line: pe.StartLine, raw: clip(raw), err: &RowError{Line: pe.StartLine, Code: "csv_syntax",
			Message: fmt.Sprintf("%v (line %d, column %d)", pe.Err, pe.Line, pe.Column)}}
		return &c.r, nil
	default:
		return nil, err
	}
	c.records++
	line, _ := c.cr.FieldPos(0)
	raw := trimEOL(c.t.span(prev, off))
	c.t.release(off)
	c.r = row{line: line, raw: clip(raw)}
	if len(rec) != len(c.header) {
		c.r.err = &RowError{Line: line, Code: "column_count",
			Message: fmt.Sprintf("has %d columns, the header has %d", len(rec), len(c.header))}
		return &c.r, nil
	}
	c.cells = c.cells[:0]
	for i, f := range rec {
		s, ok := decodeText(f, c.enc)
		if !ok {
			c.r.err = &RowError{Line: line, Column: c.header[i], Code: "invalid_encoding",
				Message: "not valid UTF-8; is the file Latin-1? (set csv.encoding or --encoding)"}
			return &c.r, nil
		}
		c.cells = append(c.cells, cell{text: s, ok: true})
	}
	c.r.cells = c.cells
	return &c.r, nil
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func clip(b []byte) []byte {
	if len(b) > maxRawRow {
		return b[:maxRawRow]
	}
	return b
}

// win1252 maps bytes 0x80–0x9F of Windows-1252 to their characters; the
// rest of the range is Latin-1.
var win1252 = [32]rune{
	'€', 0x81, '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', 0x8D, 'Ž', 0x8F,
	0x90, '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', 0x9D, 'ž', 'Ÿ',
}

// decodeText returns s as UTF-8. For UTF-8 input ok is false when s is not
// valid UTF-8; single-byte encodings always decode.
func decodeText(s, enc string) (string, bool) {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return s, true
	}
	switch enc {
	case EncodingLatin1, EncodingWin1252:
		b := make([]byte, 0, len(s)+len(s)/2)
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c < 0x80:
				b = append(b, c)
			case c < 0xA0 && enc == EncodingWin1252:
				b = utf8.AppendRune(b, win1252[c-0x80])
			default:
				b = utf8.AppendRune(b, rune(c))
			}
		}
		return string(b), true
	default:
		return s, utf8.ValidString(s)
	}
}

// maxLine is the longest NDJSON line read; longer lines fail as a row.
const maxLine = 1 << 20

// ndjsonReader reads one JSON object per line. With paths it extracts
// those fields into cells; without, rows carry only their raw bytes.
type ndjsonReader struct {
	br    *bufio.Reader
	paths [][]string
	line  int
	off   int64
	crc   uint64
	buf   []byte
	cells []cell
	r     row
}

func newNDJSONReader(in io.Reader, paths []string) *ndjsonReader {
	br := bufio.NewReaderSize(in, 64<<10)
	stripBOM(br)
	n := &ndjsonReader{br: br}
	for _, p := range paths {
		n.paths = append(n.paths, strings.Split(p, "."))
	}
	return n
}

func (n *ndjsonReader) position() (int64, uint64) { return n.off, n.crc }

func (n *ndjsonReader) next() (*row, error) {
	for {
		line, long, err := n.readLine()
		if err != nil {
			return nil, err
		}
		n.line++
		if long {
			n.r = row{line: n.line, raw: clip(line), err: &RowError{Line: n.line, Code: "too_large",
				Message: fmt.Sprintf("line longer than %d bytes", maxLine)}}
			return &n.r, nil
		}
		line = trimEOL(line)
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		n.r = row{line: n.line, raw: line}
		if !utf8.Valid(line) {
			n.r.err = &RowError{Line: n.line, Code: "invalid_encoding", Message: "line is not valid UTF-8"}
			return &n.r, nil
		}
		if n.paths == nil {
			return &n.r, nil
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(line, &obj); err != nil || obj == nil {
			n.r.err = &RowError{Line: n.line, Code: "invalid_json", Message: "line is not a JSON object"}
			return &n.r, nil
		}
		n.cells = n.cells[:0]
		for _, p := range n.paths {
			n.cells = append(n.cells, lookup(obj, p))
		}
		n.r.cells = n.cells
		return &n.r, nil
	}
}

// readLine returns the next line (with its line ending) and whether it
// was too long (then only its start is returned). At the end it returns
// io.EOF; a last line without a line ending is returned first.
func (n *ndjsonReader) readLine() ([]byte, bool, error) {
	n.buf = n.buf[:0]
	long := false
	for {
		chunk, err := n.br.ReadSlice('\n')
		n.off += int64(len(chunk))
		n.crc = crc64.Update(n.crc, crcTable, chunk)
		if len(n.buf)+len(chunk) <= maxLine {
			n.buf = append(n.buf, chunk...)
		} else {
			long = true
		}
		switch {
		case err == nil:
			return n.buf, long, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(n.buf) > 0 || long {
				return n.buf, long, nil
			}
			return nil, false, io.EOF
		default:
			return nil, false, err
		}
	}
}

// lookup finds a dotted path in a JSON object.
func lookup(obj map[string]json.RawMessage, path []string) cell {
	v, ok := obj[path[0]]
	for _, k := range path[1:] {
		if !ok || len(v) == 0 || v[0] != '{' {
			return cell{}
		}
		var inner map[string]json.RawMessage
		if json.Unmarshal(v, &inner) != nil {
			return cell{}
		}
		v, ok = inner[k]
	}
	if !ok || string(v) == "null" {
		return cell{}
	}
	c := cell{json: v, ok: true}
	switch v[0] {
	case '"':
		var s string
		if json.Unmarshal(v, &s) != nil {
			return cell{}
		}
		c.text = s
	default:
		c.text = string(v)
	}
	return c
}

// quote is strconv.Quote for messages.
func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strconv.Quote(s)
}
