package benchmark

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"gonum.org/v1/plot"
)

// A policy whose regret is zero at every cost (a pool world's easy objective) is drawn at
// the log axis's floor: one value on the axis must still plot.
func TestPlotAllZeroRegret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regret.svg")
	res := &Result{World: "w", Objective: "o"}
	sums := []PolicySummary{{Policy: "p", Grid: []float64{0.5}, Median: []float64{0}, Q25: []float64{0}, Q75: []float64{0}}}
	if err := plotSetting(path, res, Setting{}, sums); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("plot not written: %v", err)
	}
	// The axis a single value gets: a decade either side; an empty axis gets [floor, 1].
	for _, c := range []struct{ min, max, wantMin, wantMax float64 }{
		{1e-5, 1e-5, 1e-6, 1e-4}, {math.Inf(1), math.Inf(-1), 1e-5, 1}, {0, 0.3, 1e-5, 1}, {0.01, 0.2, 0.01, 0.2},
	} {
		a := plot.Axis{Min: c.min, Max: c.max}
		widenLog(&a, 1e-5)
		if math.Abs(a.Min-c.wantMin) > 1e-12 || math.Abs(a.Max-c.wantMax) > 1e-12 {
			t.Errorf("widenLog [%g, %g] = [%g, %g], want [%g, %g]", c.min, c.max, a.Min, a.Max, c.wantMin, c.wantMax)
		}
	}
}
