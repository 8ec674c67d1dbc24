package importcmd

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"tandem/imports"
)

// progress shows an import's progress: a bar redrawn in place on a
// terminal ("bar"), a line every few seconds otherwise ("plain"), or
// nothing ("none").
type progress struct {
	w     io.Writer
	mode  string
	size  int64 // bytes of the file, -1 when unknown (stdin)
	drawn bool
}

func newProgress(w io.Writer, mode string, size int64) *progress {
	return &progress{w: w, mode: mode, size: size}
}

const barWidth = 24

// line renders one progress line.
func (p *progress) line(st imports.Status) string {
	var b strings.Builder
	frac := -1.0
	if p.size > 0 {
		frac = min(float64(st.BytesRead)/float64(p.size), 1)
	}
	if p.mode == "bar" {
		fill := 0
		if frac >= 0 {
			fill = int(frac * barWidth)
		}
		b.WriteString("[" + strings.Repeat("#", fill) + strings.Repeat(".", barWidth-fill) + "] ")
	} else {
		b.WriteString("import " + st.ID + ": ")
	}
	if frac >= 0 {
		fmt.Fprintf(&b, "%3.0f%%  ", frac*100)
	}
	fmt.Fprintf(&b, "%s rows  %s rows/s  %s errors", commas(st.RowsImported+st.RowsFailed), commas(int64(st.RowsPerSecond)), commas(st.RowsFailed))
	switch {
	case st.ETASeconds != nil:
		b.WriteString("  ETA " + eta(*st.ETASeconds))
	case frac < 0:
		b.WriteString("  ETA -")
	}
	return b.String()
}

func (p *progress) show(st imports.Status) {
	switch p.mode {
	case "bar":
		fmt.Fprintf(p.w, "\r%-90s", p.line(st))
		p.drawn = true
	case "plain":
		fmt.Fprintln(p.w, p.line(st))
	}
}

// done ends the bar's line.
func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

func eta(sec float64) string {
	d := time.Duration(sec * float64(time.Second)).Round(time.Second)
	if d < time.Second {
		return "<1s"
	}
	return d.String()
}

// commas writes n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
