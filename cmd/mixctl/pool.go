package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mixopt/mixopt/internal/sim"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// addRecordings fills a spec from recordings before it is sent: the mixtures recorded at
// each of the spec's scales become that scale's candidate pool (--pool), and recorded runs
// become prior runs (--prior). Runs at scales the spec lacks are left out and counted.
func addRecordings(spec *pb.StudySpec, poolFiles, priorFiles []string) (notes []string, err error) {
	domains := make([]string, len(spec.Domains))
	for i, d := range spec.Domains {
		domains[i] = d.Name
	}
	scaleOf := func(name string) *pb.Scale {
		for _, sc := range spec.Scales {
			if strings.EqualFold(sc.Name, name) {
				return sc
			}
		}
		return nil
	}
	load := func(flag, path string, each func(run sim.RecordedRun, sc *pb.Scale, mixture []float64)) error {
		rec, err := sim.LoadRecording(path)
		if err != nil {
			return usageError{fmt.Errorf("%s %s: %w", flag, path, err)}
		}
		skipped := map[string]int{}
		for _, run := range rec.Runs() {
			sc := scaleOf(run.Scale)
			if sc == nil {
				skipped[run.Scale]++
				continue
			}
			mix, err := run.MixtureIn(domains)
			if err != nil {
				return usageError{fmt.Errorf("%s %s: %w", flag, path, err)}
			}
			each(run, sc, mix)
		}
		for _, scale := range slices.Sorted(maps.Keys(skipped)) {
			notes = append(notes, fmt.Sprintf("%s %s: %d runs at scale %s, which the study does not have, left out", flag, path, skipped[scale], scale))
		}
		return nil
	}
	for _, path := range poolFiles {
		if err := load("--pool", path, func(_ sim.RecordedRun, sc *pb.Scale, mix []float64) {
			sc.Pool = append(sc.Pool, &pb.Mixture{Weights: mix})
		}); err != nil {
			return nil, err
		}
	}
	for _, path := range priorFiles {
		if err := load("--prior", path, func(run sim.RecordedRun, sc *pb.Scale, mix []float64) {
			pr := &pb.PriorRun{Scale: sc.Name, Mixture: mix, Steps: run.Steps, SourceRun: run.RunID}
			for _, p := range run.Points {
				pr.Curve = append(pr.Curve, &pb.CurvePoint{Step: p.Step, Tokens: p.Tokens, TrainLoss: p.TrainLoss,
					Eval: p.Eval, WallTimeS: p.WallTimeS})
			}
			spec.PriorRuns = append(spec.PriorRuns, pr)
		}); err != nil {
			return nil, err
		}
	}
	return notes, nil
}

// poolAndPriorSummary says how big each scale's pool is and how many prior runs there
// are, for tables where the lists themselves would drown the rest.
func poolAndPriorSummary(spec *pb.StudySpec) (pools, prior string) {
	var ps []string
	for _, sc := range spec.Scales {
		if len(sc.Pool) > 0 {
			ps = append(ps, fmt.Sprintf("%s: %d", sc.Name, len(sc.Pool)))
		}
	}
	byScale := map[string]int{}
	var order []string
	for _, r := range spec.PriorRuns {
		if byScale[r.Scale] == 0 {
			order = append(order, r.Scale)
		}
		byScale[r.Scale]++
	}
	var pr []string
	for _, s := range order {
		pr = append(pr, fmt.Sprintf("%s: %d", s, byScale[s]))
	}
	return strings.Join(ps, ", "), strings.Join(pr, ", ")
}
