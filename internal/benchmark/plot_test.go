package benchmark

import (
	"os"
	"path/filepath"
	"testing"
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
}
