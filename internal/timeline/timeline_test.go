package timeline

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lastcall-dev/lastcall/internal/loadgen"
)

func TestBinCountsEveryResultOnceBySecondSent(t *testing.T) {
	t.Parallel()
	zero := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return zero.Add(time.Duration(ms) * time.Millisecond) }
	rs := []loadgen.Result{
		{Start: at(-1500), End: at(13500), Kind: loadgen.OK},
		{Start: at(100), End: at(15100), Kind: loadgen.OK},
		{Start: at(999), End: at(15999), Kind: loadgen.OK},
		{Start: at(1000), End: at(16000), Kind: loadgen.Status5xx, Status: 502},
		{Start: at(1200), End: at(16200), Kind: loadgen.Status5xx, Status: 502},
		{Start: at(1300), End: at(16300), Kind: loadgen.Reset},
		{Start: at(2500), End: at(17500), Kind: loadgen.Status5xx, Status: 503},
		{Start: at(9000), End: at(24000), Kind: loadgen.OK}, // outside the range: not drawn
	}
	got := Bin(rs, zero, -2, 3)
	want := map[string][]int{"ok": {1, 0, 2, 0, 0}, "502": {0, 0, 0, 2, 0}, "503": {0, 0, 0, 0, 1}, "reset": {0, 0, 0, 1, 0}}
	if len(got) != len(want) || got[0].Outcome != "ok" {
		t.Fatalf("series %+v, want ok first and %d series", got, len(want))
	}
	for _, s := range got {
		w, ok := want[s.Outcome]
		if !ok || len(s.Counts) != len(w) {
			t.Fatalf("series %q = %v, want %v", s.Outcome, s.Counts, w)
		}
		for i := range w {
			if s.Counts[i] != w[i] {
				t.Errorf("series %q = %v, want %v", s.Outcome, s.Counts, w)
				break
			}
		}
	}
	if Bin(rs, zero, 3, 3) != nil {
		t.Errorf("an empty range must give no series")
	}
}

func TestWriteDrawsPNGAndSVG(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	zero := time.Now()
	var rs []loadgen.Result
	for i := range 400 {
		r := loadgen.Result{Start: zero.Add(time.Duration(i) * 10 * time.Millisecond), Kind: loadgen.OK, Status: 200}
		r.End = r.Start.Add(50 * time.Millisecond)
		if i%37 == 0 {
			r.Kind, r.Status = loadgen.Status5xx, 502
		}
		rs = append(rs, r)
	}
	panels := []Panel{
		{Title: "without", Zero: zero.Add(time.Second), Results: rs, Events: []Event{{At: zero.Add(time.Second), Kind: Action}, {At: zero.Add(2 * time.Second), Kind: Terminating}}},
		{Title: "with", Zero: zero.Add(time.Second), Results: rs[:200], Events: []Event{{At: zero.Add(3 * time.Second), Kind: Ready}, {At: zero.Add(3 * time.Second), Kind: "something new"}}},
	}
	pngPath := filepath.Join(dir, "sub", "t.png")
	if err := Write(pngPath, "title", panels...); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if w, h := img.Bounds().Dx(), img.Bounds().Dy(); w < 900 || h < 600 {
		t.Errorf("PNG is %dx%d, want at least 900x600 for two panels", w, h)
	}
	svgPath := filepath.Join(dir, "t.svg")
	if err := Write(svgPath, "title", panels...); err != nil {
		t.Fatal(err)
	}
	s, _ := os.ReadFile(svgPath)
	for _, want := range []string{"<svg", "ok (", "502 (", "pod terminating", "new pod ready"} {
		if !strings.Contains(string(s), want) {
			t.Errorf("the SVG has no %q", want)
		}
	}
	if err := Write(filepath.Join(dir, "t.jpg"), "x", panels...); err == nil {
		t.Errorf("a .jpg path must be refused")
	}
	if err := Write(filepath.Join(dir, "t.png"), "x"); err == nil {
		t.Errorf("no panel must be refused")
	}
}
