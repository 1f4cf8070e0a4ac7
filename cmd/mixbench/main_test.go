package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mixopt/mixopt/internal/sim"
)

// writePool writes a small two-scale recording and returns its path.
func writePool(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pool.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range 12 {
		a := float64(i) / 11
		for _, sc := range []struct {
			name   string
			params float64
		}{{"S", 1e6}, {"T", 1e9}} {
			v := 2 + (a-0.7)*(a-0.7)
			r := sim.RecordedRun{RunID: fmt.Sprintf("%s-%d", sc.name, i), Domains: []string{"a", "b"}, Mixture: []float64{a, 1 - a},
				Scale: sc.name, Params: sc.params, Steps: 100, TokensPerStep: 1000,
				Points: []sim.RecordedPoint{{Step: 100, Tokens: 100000, TrainLoss: v, Eval: map[string]float64{"x_ce": v}}}}
			if err := sim.WriteRecordedRun(f, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	return path
}

// mixbench runs a recording world end to end and writes its files; a missing data model
// is reported with where it comes from.
func TestRun(t *testing.T) {
	out := t.TempDir()
	err := run([]string{"-world", "recording:" + writePool(t), "-seeds", "1", "-policies", "random,uniform,regmix,mfms",
		"-budget", "3", "-parallel", "1", "-quiet", "-out", out})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "headlines.json")); err != nil {
		t.Error(err)
	}
	matches, _ := filepath.Glob(filepath.Join(out, "recording_*", "x_ce", "results.json"))
	if len(matches) != 1 {
		t.Errorf("results.json per world and objective: %v", matches)
	}
	err = run([]string{"-world", "datamodel", "-data", filepath.Join(t.TempDir(), "missing.json"), "-quiet"})
	if err == nil || !strings.Contains(err.Error(), "shared benchmark data") {
		t.Errorf("missing data model: %v", err)
	}
}
