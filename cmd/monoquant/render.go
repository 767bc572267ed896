package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/monoquant/monoquant/core/names"
)

// table renders aligned text columns. Columns listed in right are right-aligned (numbers).
type table struct {
	header []string
	right  map[int]bool
	rows   [][]string
}

func newTable(header ...string) *table { return &table{header: header, right: map[int]bool{}} }

func (t *table) alignRight(cols ...int) *table {
	for _, c := range cols {
		t.right[c] = true
	}
	return t
}

// add appends a row. Cells are escaped (names.Escape) before their widths are measured: names
// from a file may carry terminal control sequences.
func (t *table) add(cells ...string) {
	esc := make([]string, len(cells))
	for i, c := range cells {
		esc[i] = names.Escape(c)
	}
	t.rows = append(t.rows, esc)
}

func (t *table) write(w io.Writer) {
	widths := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			if i < len(widths) {
				widths[i] = max(widths[i], utf8.RuneCountInString(c))
			}
		}
	}
	line := func(r []string) {
		var b strings.Builder
		for i := range widths {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if t.right[i] {
				b.WriteString(pad + c)
			} else if i == len(widths)-1 {
				b.WriteString(c) // no trailing spaces
			} else {
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(t.header)
	seps := make([]string, len(widths))
	for i, wd := range widths {
		seps[i] = strings.Repeat("-", wd)
	}
	line(seps)
	for _, r := range t.rows {
		line(r)
	}
}

// writeJSON prints one indented JSON document: scripts read stdout whole.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// humanBytes uses decimal units, as file managers and `ls -h --si` do.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// dB formats an SQNR: identical tensors give +Inf, which reads better as "exact".
func dB(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "exact"
	case math.IsNaN(v):
		return "n/a"
	}
	return fmt.Sprintf("%.2f dB", v)
}

func shapeString(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// humanOut wraps the writer of a command's human (non-JSON) output so that nothing a file
// carries can act on the terminal: every control character other than newline, and the C1
// and bidirectional characters, is written as an escape (names.Escape). The JSON output does not
// go through it: encoding/json escapes control characters itself and the names stay exact.
func humanOut(w io.Writer) io.Writer { return escapingWriter{w} }

type escapingWriter struct{ w io.Writer }

func (e escapingWriter) Write(p []byte) (int, error) {
	lines := strings.Split(string(p), "\n")
	for i, l := range lines {
		lines[i] = names.Escape(l)
	}
	if _, err := io.WriteString(e.w, strings.Join(lines, "\n")); err != nil {
		return 0, err
	}
	return len(p), nil
}
