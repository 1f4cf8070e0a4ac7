package sim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mixopt/mixopt/internal/sim/simtest"
)

func TestOpen(t *testing.T) {
	benchmarkModelPath := simtest.SharedFile(t, "slimpajama-datamodel-v1.json")
	dir := t.TempDir()
	recPath := filepath.Join(dir, "runs.jsonl")
	writeFile(t, recPath, string(encodeRuns(t, testRun("r", "20M", []float64{0.2, 0.3, 0.5}, 200))))
	// A data model under a name without the .json suffix, to test the prefix form.
	raw, err := os.ReadFile(benchmarkModelPath)
	if err != nil {
		t.Fatal(err)
	}
	modelCopy := filepath.Join(dir, "model.bin")
	writeFile(t, modelCopy, string(raw))
	recCopy := filepath.Join(dir, "runs.data")
	writeFile(t, recCopy, string(encodeRuns(t, testRun("r", "20M", []float64{0.2, 0.3, 0.5}, 200))))

	tests := []struct {
		spec     string
		noise    float64
		wantName string // prefix of Name(); "" means an error containing wantErr
		wantErr  string
	}{
		{spec: "synthetic", wantName: "synthetic"},
		{spec: "synthetic", noise: 0.1, wantName: "synthetic (noise 0.1)"},
		{spec: benchmarkModelPath, wantName: "datamodel:slimpajama-datamodel-v1"},
		{spec: "datamodel:" + modelCopy, noise: 0.01, wantName: "datamodel:slimpajama-datamodel-v1 (noise 0.01)"},
		{spec: recPath, wantName: "recording:" + recPath},
		{spec: "recording:" + recCopy, wantName: "recording:" + recCopy},
		{spec: recPath, noise: 0.1, wantErr: "not to recordings"},
		{spec: "synthetic", noise: -1, wantErr: "noise -1"},
		{spec: "datamodel:", wantErr: "names no file"},
		{spec: "recording:" + filepath.Join(dir, "missing.jsonl"), wantErr: "open recording"},
		{spec: filepath.Join(dir, "missing.json"), wantErr: "read data model"},
		{spec: "Synthetic", wantErr: `unknown simulator source "Synthetic": want "synthetic", "datamodel:PATH", "recording:PATH"`},
		{spec: "", wantErr: "unknown simulator source"},
		{spec: "model.yaml", wantErr: ".jsonl (recording)"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			src, err := Open(tc.spec, OpenOptions{Noise: tc.noise})
			if tc.wantName == "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || src != nil {
					t.Fatalf("Open = %v, %v; want nil and an error containing %q", src, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(src.Name(), tc.wantName) {
				t.Errorf("name %q, want prefix %q", src.Name(), tc.wantName)
			}
		})
	}
}
