package clickhouse

import (
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
)

// quote returns s as a ClickHouse string literal. Every byte that is not
// printable ASCII is written as a \xHH escape, so any byte string (invalid
// UTF-8, NUL) survives exactly and nothing in s can end the literal.
func quote(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			b.WriteString(`\x`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// quoteIdent returns name as a ClickHouse identifier in backquotes.
func quoteIdent(name string) string {
	return "`" + strings.NewReplacer(`\`, `\\`, "`", "\\`").Replace(name) + "`"
}

// int64Lit is n as a literal of type Int64 (a bare negative number would be
// parsed as a negated UInt64 or Int64 by value range).
func int64Lit(n int64) string { return "toInt64(" + strconv.FormatInt(n, 10) + ")" }

// newTable returns an external table (data sent with a query, readable
// in it as a temporary table named name) with the given columns, each
// "name Type".
func newTable(name string, columns ...string) (*ext.Table, error) {
	opts := make([]func(*ext.Table) error, len(columns))
	for i, c := range columns {
		n, typ, _ := strings.Cut(c, " ")
		opts[i] = ext.Column(n, column.Type(typ))
	}
	return ext.NewTable(name, opts...)
}
