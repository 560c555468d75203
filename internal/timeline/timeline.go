// Package timeline draws what a load saw during a rollout: requests per second (by when they were sent), successes and each
// failure kind as its own line, with the rollout's pod events marked, one panel per run (e.g. without and
// with lastcall) on a shared time and rate scale. It renders PNG or SVG with gonum/plot.
package timeline

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
)

// EventKind is what happened to a pod; each kind has its own line style.
type EventKind string

// Pod events worth marking on a rollout.
const (
	Action      EventKind = "kubectl"          // the rollout restart or scale command
	Terminating EventKind = "pod terminating"  // an old pod got its deletion timestamp
	Ready       EventKind = "new pod ready"    // a new pod became Ready
	Dropped     EventKind = "ingress dropped"  // the ingress stopped sending new requests to an old pod
	Gone        EventKind = "old pod gone"     // an old pod was deleted from the API
	unknownKind EventKind = "event (unstyled)" // fallback style for kinds not listed
)

// Event is one vertical mark.
type Event struct {
	At   time.Time
	Kind EventKind
}

// Panel is one run.
type Panel struct {
	Title   string
	Zero    time.Time // x = 0 (the rollout's start)
	Results []loadgen.Result
	Events  []Event
}

// Series is one line of a panel: requests with one outcome, counted by the second in which they were sent.
type Series struct {
	Outcome string
	Counts  []int // Counts[i]: sent in [From+i s, From+i+1 s)
}

// Bin counts the results by outcome and by the second (relative to zero) in which they were sent, over the
// seconds from..to (to exclusive). By start, not by end: a request that timed out 15 s later belongs to the
// moment it was sent into the rollout. "ok" comes first, then the failures by name. An outcome that never occurs has no
// series.
func Bin(results []loadgen.Result, zero time.Time, from, to int) []Series {
	n := to - from
	if n <= 0 {
		return nil
	}
	by := map[string][]int{}
	for _, r := range results {
		i := int(math.Floor(r.Start.Sub(zero).Seconds())) - from
		if i < 0 || i >= n {
			continue
		}
		o := r.Outcome()
		if by[o] == nil {
			by[o] = make([]int, n)
		}
		by[o][i]++
	}
	names := make([]string, 0, len(by))
	for o := range by {
		names = append(names, o)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "ok") != (names[j] == "ok") {
			return names[i] == "ok"
		}
		return names[i] < names[j]
	})
	out := make([]Series, 0, len(names))
	for _, o := range names {
		out = append(out, Series{Outcome: o, Counts: by[o]})
	}
	return out
}

// span is the common x range of the panels: whole seconds covering every request's start and every event.
func span(panels []Panel) (from, to int) {
	first := true
	add := func(t, zero time.Time) {
		s := t.Sub(zero).Seconds()
		lo, hi := int(math.Floor(s)), int(math.Floor(s))+1
		if first || lo < from {
			from = lo
		}
		if first || hi > to {
			to = hi
		}
		first = false
	}
	for _, p := range panels {
		for _, r := range p.Results {
			add(r.Start, p.Zero)
		}
		for _, e := range p.Events {
			add(e.At, p.Zero)
		}
	}
	return from, to
}

// outcome colours: successes green, the ingress's statuses in reds, connection-level failures in other hues.
var outcomeColors = map[string]color.RGBA{
	"ok":              {R: 0x2e, G: 0x8b, B: 0x57, A: 0xff},
	"502":             {R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	"503":             {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	"504":             {R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	"reset":           {R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	"eof":             {R: 0xe3, G: 0x77, B: 0xc2, A: 0xff},
	"timeout":         {R: 0x17, G: 0xbe, B: 0xcf, A: 0xff},
	"connect-refused": {R: 0xbc, G: 0xbd, B: 0x22, A: 0xff},
}

var otherColor = color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}

type eventStyle struct {
	color  color.NRGBA
	dashes []vg.Length
}

var eventStyles = map[EventKind]eventStyle{
	Action:      {color.NRGBA{A: 0xff}, nil},
	Terminating: {color.NRGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xb0}, []vg.Length{vg.Points(5), vg.Points(3)}},
	Ready:       {color.NRGBA{R: 0x2e, G: 0x8b, B: 0x57, A: 0xb0}, []vg.Length{vg.Points(1.5), vg.Points(2.5)}},
	Dropped:     {color.NRGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xb0}, []vg.Length{vg.Points(6), vg.Points(2), vg.Points(1.5), vg.Points(2)}},
	Gone:        {color.NRGBA{R: 0x77, G: 0x77, B: 0x77, A: 0xb0}, []vg.Length{vg.Points(2), vg.Points(2)}},
	unknownKind: {color.NRGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xb0}, []vg.Length{vg.Points(1), vg.Points(1)}},
}

// Write renders the panels stacked vertically into path (.png or .svg), all on the same time and rate scale so
// they can be compared at a glance.
func Write(path, title string, panels ...Panel) error {
	if len(panels) == 0 {
		return errors.New("timeline: no panel to draw")
	}
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".png" && ext != ".svg" {
		return fmt.Errorf("timeline: %s: want a .png or .svg file", path)
	}
	from, to := span(panels)
	ymax := 1.0
	binned := make([][]Series, len(panels))
	for i, p := range panels {
		binned[i] = Bin(p.Results, p.Zero, from, to)
		for _, s := range binned[i] {
			for _, c := range s.Counts {
				ymax = math.Max(ymax, float64(c))
			}
		}
	}
	ymax = math.Ceil(ymax*1.15/10) * 10
	rows := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		pl, err := panel(p, binned[i], from, to, ymax)
		if err != nil {
			return err
		}
		if i == 0 && title != "" {
			pl.Title.Text = title + "\n" + p.Title
		}
		rows[i] = []*plot.Plot{pl}
	}
	w, h := vg.Points(960), vg.Points(float64(300*len(panels)+40))
	var c vg.CanvasWriterTo
	switch ext {
	case ".png":
		img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(96), vgimg.UseBackgroundColor(color.White))
		c = vgimg.PngCanvas{Canvas: img}
	default:
		c = vgsvg.New(w, h)
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(10), PadY: vg.Points(14)}
	cs := plot.Align(rows, tiles, dc)
	for i := range rows {
		rows[i][0].Draw(cs[i][0])
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("timeline: writing %s: %w", path, err)
	}
	return f.Close()
}

// secondTicks labels every 5 s (every 10 s beyond a minute), with a minor tick each second up to a minute.
type secondTicks struct{}

func (secondTicks) Ticks(lo, hi float64) []plot.Tick {
	major := 5
	if hi-lo > 60 {
		major = 10
	}
	var ts []plot.Tick
	for s := int(math.Ceil(lo)); float64(s) <= hi; s++ {
		switch {
		case s%major == 0:
			ts = append(ts, plot.Tick{Value: float64(s), Label: fmt.Sprint(s)})
		case hi-lo <= 60:
			ts = append(ts, plot.Tick{Value: float64(s)})
		}
	}
	return ts
}

func panel(p Panel, series []Series, from, to int, ymax float64) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = p.Title
	pl.X.Label.Text = "seconds since the kubectl command"
	pl.Y.Label.Text = "requests per second (by when sent)"
	pl.X.Min, pl.X.Max = float64(from), float64(to)
	pl.X.Tick.Marker = secondTicks{}
	pl.Y.Min, pl.Y.Max = 0, ymax
	pl.Add(plotter.NewGrid())
	pl.Legend.Top = true
	pl.Legend.Left = false
	pl.Legend.XOffs = -vg.Points(4)
	for _, s := range series {
		pts := make(plotter.XYs, 0, len(s.Counts)+1)
		for i, c := range s.Counts {
			pts = append(pts, plotter.XY{X: float64(from + i), Y: float64(c)})
		}
		pts = append(pts, plotter.XY{X: float64(to), Y: float64(s.Counts[len(s.Counts)-1])})
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, fmt.Errorf("timeline: %s: %w", s.Outcome, err)
		}
		l.StepStyle = plotter.PostStep
		col, ok := outcomeColors[s.Outcome]
		if !ok {
			col = otherColor
		}
		l.Color, l.Width = col, vg.Points(1.6)
		total := 0
		for _, c := range s.Counts {
			total += c
		}
		pl.Add(l)
		pl.Legend.Add(fmt.Sprintf("%s (%d)", s.Outcome, total), l)
	}
	seen := map[EventKind]bool{}
	evs := append([]Event(nil), p.Events...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].At.Before(evs[j].At) })
	for _, e := range evs {
		x := e.At.Sub(p.Zero).Seconds()
		l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: ymax}})
		if err != nil {
			return nil, fmt.Errorf("timeline: event %s: %w", e.Kind, err)
		}
		st, ok := eventStyles[e.Kind]
		if !ok {
			st = eventStyles[unknownKind]
		}
		l.Color, l.Dashes, l.Width = st.color, st.dashes, vg.Points(1)
		pl.Add(l)
		if !seen[e.Kind] {
			seen[e.Kind] = true
			pl.Legend.Add(string(e.Kind), l)
		}
	}
	return pl, nil
}
