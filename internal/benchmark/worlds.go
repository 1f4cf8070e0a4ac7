package benchmark

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/mixopt/mixopt/internal/sim"
)

// DataModelFile is the data model's file name in the shared benchmark folder.
const DataModelFile = "slimpajama-datamodel-v1.json"

// shippedWorld is a world made of the shared benchmark recordings.
type shippedWorld struct {
	files      []string
	target     string
	objectives []string
	priorScale string // "" for none
	about      string
}

// regmixObjectives are the RegMix worlds' objectives: the loss RegMix itself optimised
// and the mean over every validation domain.
var regmixObjectives = []string{"pile_cc_ce", "mean_ce"}

var shippedWorlds = map[string]shippedWorld{
	"regmix-60m": {files: []string{"regmix-pile-1m-60m.jsonl"}, target: "60M", objectives: regmixObjectives,
		about: "RegMix's 1M (768) and 60M (256) runs, target 60M"},
	"regmix-1b": {files: []string{"regmix-pile-1m-60m.jsonl", "regmix-pile-1b.jsonl"}, target: "1B", objectives: regmixObjectives,
		about: "RegMix's 1M, 60M and 1B (64 other mixtures) runs, target 1B"},
	"regmix-1b-prior": {files: []string{"regmix-pile-1m-60m.jsonl", "regmix-pile-1b.jsonl"}, target: "1B", objectives: regmixObjectives,
		priorScale: "1M", about: "regmix-1b, starting from the 768 1M runs as free prior runs"},
}

// WorldNames lists the worlds OpenWorld knows by name, then the two forms it parses.
func WorldNames() []string {
	return []string{"datamodel", "regmix-60m", "regmix-1b", "regmix-1b-prior", "recording:FILE[,FILE...]"}
}

// OpenWorld opens a world by name: "datamodel" (the data model at dataModelPath),
// a shipped RegMix world (read from sharedDir), or "recording:FILE[,FILE...]" (a pool
// world of those recordings, targeting their largest scale, judged on every metric
// recorded at the target).
func OpenWorld(name, dataModelPath, sharedDir string) (World, error) {
	switch {
	case name == "datamodel":
		m, err := sim.LoadDataModel(dataModelPath)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("world datamodel: %s not found: it is %s from the project's shared benchmark data (shared/benchmarks/ beside the repository, described in its README.md); pass -data PATH: %w",
				dataModelPath, DataModelFile, err)
		}
		if err != nil {
			return nil, err
		}
		return NewDataModelWorld(m), nil
	case strings.HasPrefix(name, "recording:"):
		var recs []*sim.Recording
		for _, f := range strings.Split(strings.TrimPrefix(name, "recording:"), ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			r, err := sim.LoadRecording(f)
			if err != nil {
				return nil, fmt.Errorf("world %s: %w", name, err)
			}
			recs = append(recs, r)
		}
		if len(recs) == 0 {
			return nil, fmt.Errorf("world %q: no recording files", name)
		}
		return NewPoolWorld(name, recs, "", nil)
	}
	sw, ok := shippedWorlds[name]
	if !ok {
		return nil, fmt.Errorf("unknown world %q (known: %s)", name, strings.Join(WorldNames(), ", "))
	}
	var recs []*sim.Recording
	for _, f := range sw.files {
		path := filepath.Join(sharedDir, f)
		r, err := sim.LoadRecording(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("world %s: %s not found: it is in the project's shared benchmark data (shared/benchmarks/ beside the repository, described in its README.md); pass -shared DIR: %w", name, path, err)
		}
		if err != nil {
			return nil, fmt.Errorf("world %s: %w", name, err)
		}
		recs = append(recs, r)
	}
	w, err := NewPoolWorld(name, recs, sw.target, sw.objectives)
	if err != nil || sw.priorScale == "" {
		return w, err
	}
	return w.WithPrior(name, sw.priorScale)
}
