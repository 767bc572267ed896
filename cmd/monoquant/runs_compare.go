package main

import (
	"context"
	"fmt"
	"html/template"
	"math"
	"os"
	"strconv"

	"github.com/monoquant/monoquant/core/runlog"
)

func runsCompare(ctx context.Context, e *env, a *runsArgs, l *runlog.Log, args []string) error {
	if len(args) < 2 {
		return usageErr("runs compare: want two or more run ids")
	}
	var runs []*runlog.Run
	for _, s := range args {
		r, err := getRun(ctx, l, s)
		if err != nil {
			return err
		}
		runs = append(runs, r)
	}
	c := runlog.Compare(runs)
	if a.html != "" {
		if err := writeCompareHTML(a.html, c); err != nil {
			return wrapExit(exitOutput, err, "writing %s", a.html)
		}
	}
	if a.asJSON {
		return writeJSON(e.stdout, c)
	}
	w := e.stdout
	header := []string{""}
	for _, id := range c.IDs {
		header = append(header, "run "+strconv.FormatInt(id, 10))
	}
	for _, sec := range []struct {
		title string
		rows  []runlog.Row
	}{{"Settings", c.Settings}, {"Results", c.Results}, {"SQNR per tensor (dB, kernel)", c.Layers}, {"Metrics", c.Metrics}} {
		if len(sec.rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s:\n", sec.title)
		t := newTable(header...)
		for _, r := range sec.rows {
			k := "  " + r.Key
			if r.Differs {
				k = "* " + r.Key
			}
			t.add(append([]string{k}, r.Values...)...)
		}
		t.write(w)
		fmt.Fprintln(w)
	}
	front := "smallest output for its SQNR"
	if c.Front != runlog.SizeQualityFront {
		front = "search objectives " + c.Front
	}
	fmt.Fprintf(w, "Pareto front (%s):", front)
	for i, on := range c.Pareto {
		if on {
			fmt.Fprintf(w, " run %d", c.IDs[i])
		}
	}
	fmt.Fprintln(w, "\n* marks a row whose values differ.")
	if a.html != "" {
		fmt.Fprintf(w, "Wrote %s\n", a.html)
	}
	return nil
}

// point is one run on the scatter.
type point struct {
	ID     int64
	X, Y   float64 // SVG coordinates
	Size   string
	SQNR   string
	Pareto bool
}

type compareView struct {
	C            *runlog.Comparison
	Points       []point
	Front        string // SVG polyline points of the Pareto front
	W, H, Margin float64
	XMin, XMax   string
	YMin, YMax   string
}

var compareTmpl = template.Must(template.New("c").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>monoquant runs compare</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}
tr.diff td{background:#fff3c4}
tr.diff td:first-child{font-weight:bold}
circle.front{fill:#d62728} circle.other{fill:#1f77b4}
</style></head><body>
<h1>monoquant: runs {{range $i, $id := .C.IDs}}{{if $i}}, {{end}}{{$id}}{{end}}</h1>
<h2>Size versus quality</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.W}}" height="{{.H}}" role="img" aria-label="output size versus SQNR">
<rect x="0" y="0" width="{{.W}}" height="{{.H}}" fill="#fafafa"/>
<line x1="{{.Margin}}" y1="{{.Margin}}" x2="{{.Margin}}" y2="{{printf "%.1f" (.AxisY)}}" stroke="#444"/>
<line x1="{{.Margin}}" y1="{{printf "%.1f" (.AxisY)}}" x2="{{printf "%.1f" (.AxisX)}}" y2="{{printf "%.1f" (.AxisY)}}" stroke="#444"/>
<text x="{{.Margin}}" y="{{printf "%.1f" (.LabelY)}}" font-size="12">{{.XMin}}</text>
<text x="{{printf "%.1f" (.AxisX)}}" y="{{printf "%.1f" (.LabelY)}}" font-size="12" text-anchor="end">{{.XMax}} (output size)</text>
<text x="4" y="{{printf "%.1f" (.AxisY)}}" font-size="12">{{.YMin}}</text>
<text x="4" y="{{.Margin}}" font-size="12">{{.YMax}} SQNR</text>
{{if .Front}}<polyline class="pareto" points="{{.Front}}" fill="none" stroke="#d62728" stroke-dasharray="4 3"/>{{end}}
{{range .Points}}<circle class="{{if .Pareto}}front{{else}}other{{end}}" cx="{{printf "%.1f" .X}}" cy="{{printf "%.1f" .Y}}" r="5"><title>run {{.ID}}: {{.Size}}, {{.SQNR}}{{if .Pareto}} (Pareto front){{end}}</title></circle>
<text x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}" dx="7" dy="-7" font-size="12">run {{.ID}}</text>
{{end}}</svg>
<p>Red: on the Pareto front (no other run is smaller and at least as good). Yellow rows differ between runs.</p>
{{define "rows"}}{{range .}}<tr{{if .Differs}} class="diff"{{end}}><td>{{.Key}}</td>{{range .Values}}<td>{{.}}</td>{{end}}</tr>
{{end}}{{end}}
{{$ids := .C.IDs}}
<h2>Settings</h2><table><tr><th></th>{{range $ids}}<th>run {{.}}</th>{{end}}</tr>{{template "rows" .C.Settings}}</table>
<h2>Results</h2><table><tr><th></th>{{range $ids}}<th>run {{.}}</th>{{end}}</tr>{{template "rows" .C.Results}}</table>
<h2>SQNR per tensor (dB, kernel)</h2><table><tr><th></th>{{range $ids}}<th>run {{.}}</th>{{end}}</tr>{{template "rows" .C.Layers}}</table>
{{if .C.Metrics}}<h2>Metrics</h2><table><tr><th></th>{{range $ids}}<th>run {{.}}</th>{{end}}</tr>{{template "rows" .C.Metrics}}</table>{{end}}
</body></html>
`))

func (v compareView) AxisX() float64  { return v.W - v.Margin }
func (v compareView) AxisY() float64  { return v.H - v.Margin }
func (v compareView) LabelY() float64 { return v.H - v.Margin + 16 }

// writeCompareHTML writes a self-contained page: inline SVG and CSS, no script, no network.
func writeCompareHTML(path string, c *runlog.Comparison) error {
	v := compareView{C: c, W: 640, H: 400, Margin: 50}
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, r := range c.Runs {
		x, y := r.Size(), clampQ(r.Quality())
		if math.IsNaN(y) {
			continue
		}
		xmin, xmax, ymin, ymax = math.Min(xmin, x), math.Max(xmax, x), math.Min(ymin, y), math.Max(ymax, y)
	}
	span := func(lo, hi float64) float64 {
		if hi > lo {
			return hi - lo
		}
		return 1
	}
	var front []point
	for i, r := range c.Runs {
		y := clampQ(r.Quality())
		if math.IsNaN(y) {
			continue
		}
		p := point{ID: r.ID, Size: humanBytes(int64(r.Size())), SQNR: dB(r.Quality()), Pareto: c.Pareto[i],
			X: v.Margin + (r.Size()-xmin)/span(xmin, xmax)*(v.W-2*v.Margin),
			Y: v.H - v.Margin - (y-ymin)/span(ymin, ymax)*(v.H-2*v.Margin)}
		v.Points = append(v.Points, p)
		if p.Pareto {
			front = append(front, p)
		}
	}
	for i := 1; i < len(front); i++ {
		for j := i; j > 0 && front[j].X < front[j-1].X; j-- {
			front[j], front[j-1] = front[j-1], front[j]
		}
	}
	for i, p := range front {
		if i > 0 {
			v.Front += " "
		}
		v.Front += fmt.Sprintf("%.1f,%.1f", p.X, p.Y)
	}
	if len(v.Points) > 0 {
		v.XMin, v.XMax = humanBytes(int64(xmin)), humanBytes(int64(xmax))
		v.YMin, v.YMax = fmt.Sprintf("%.1f dB", ymin), fmt.Sprintf("%.1f dB", ymax)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = compareTmpl.Execute(f, v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// clampQ keeps a lossless (+Inf dB) run on the chart, at the top.
func clampQ(q float64) float64 {
	if math.IsInf(q, 1) || q > 1e300 {
		return 200
	}
	return q
}
