package sim

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// DataModelOptions tunes a data-model source.
type DataModelOptions struct {
	// Noise is the standard deviation of Gaussian noise added to every output, in the
	// output's own units (0: the model's deterministic values).
	Noise float64
}

// scaleMatchRatio is how far (as a ratio) a request's parameter count may be from a model
// scale's size and still map to it: the model is only trustworthy at its fitted scales,
// and the nearest fitted scales differ by a factor of 1.4 or more.
const scaleMatchRatio = 1.25

type dataModelSource struct {
	m     *DataModel
	noise float64
	// ceIndex maps a domain to the index of its "<domain>_ce" output (-1: absent).
	ceIndex map[string]int
	train   int
}

// NewDataModelSource answers requests by evaluating the data model m along the curve.
//
// The request's domains must be the model's, in the model's order. Its scale maps to one of
// the model's by name, else to the nearest size (within a factor 1.25) to Params or, when
// Params is 0, to the size in the name ("150M"). Steps must lie in [steps.min, steps.max].
// Each point has TrainLoss = train_ce, Eval = every output by name plus mean_ce (the mean of
// <domain>_ce over the request's domains), Tokens = step×TokensPerStep and WallTime =
// step×FLOPs per step/1e14 s (a modelled 100 TFLOP/s; FLOPs per step from the request, else
// the model's gflops_per_step).
//
// At most one options value is used; the variadic form lets callers without options keep
// the short call. m must come from LoadDataModel (or be equally valid) and is not modified.
func NewDataModelSource(m *DataModel, opts ...DataModelOptions) Source {
	var o DataModelOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	ce := make(map[string]int, len(m.Domains))
	for _, d := range m.Domains {
		ce[d] = m.OutputIndex(d + "_ce")
	}
	return &dataModelSource{m: m, noise: o.Noise, ceIndex: ce, train: m.OutputIndex("train_ce")}
}

func (s *dataModelSource) Name() string {
	if s.noise > 0 {
		return fmt.Sprintf("datamodel:%s (noise %g)", s.m.Name, s.noise)
	}
	return "datamodel:" + s.m.Name
}

// Run evaluates the model at each step EvalEvery apart (default: the model's steps.every)
// from steps.min up to req.Steps, ending on req.Steps.
func (s *dataModelSource) Run(req Request) (Run, error) {
	if err := validateRequest(req); err != nil {
		return Run{}, fmt.Errorf("data model %s: %w", s.m.Name, err)
	}
	if !slices.Equal(req.Domains, s.m.Domains) {
		return Run{}, fmt.Errorf("data model %s: request domains [%s] differ from the model's [%s] (names and order must match)",
			s.m.Name, strings.Join(req.Domains, " "), strings.Join(s.m.Domains, " "))
	}
	if s.train < 0 {
		return Run{}, fmt.Errorf("data model %s has no train_ce output", s.m.Name)
	}
	for _, d := range req.Domains {
		if s.ceIndex[d] < 0 {
			return Run{}, fmt.Errorf("data model %s has no %s_ce output", s.m.Name, d)
		}
	}
	sc, err := s.scale(req)
	if err != nil {
		return Run{}, err
	}
	st := s.m.Steps
	if st.Min < 1 || st.Max < st.Min {
		return Run{}, fmt.Errorf("data model %s has no valid steps range (min %d, max %d)", s.m.Name, st.Min, st.Max)
	}
	if req.Steps < st.Min || req.Steps > st.Max {
		return Run{}, fmt.Errorf("data model %s: steps %d outside the model's range [%d, %d]", s.m.Name, req.Steps, st.Min, st.Max)
	}
	every := req.EvalEvery
	if every == 0 {
		every = st.Every
	}
	if every == 0 {
		every = 100
	}
	grid, err := stepGrid(st.Min, every, req.Steps)
	if err != nil {
		return Run{}, fmt.Errorf("data model %s: %w", s.m.Name, err)
	}
	flops := req.FlopsPerStep
	if flops == 0 {
		flops = sc.GFlopsPerStep * 1e9
	}
	nz := newNoiser(s.noise, req)
	points := make([]Point, 0, len(grid))
	for _, step := range grid {
		out := s.m.Eval(req.Mixture, sc.SizeM, float64(step))
		if rng := nz.at(step); rng != nil {
			for i := range out {
				out[i] += s.noise * rng.NormFloat64()
			}
		}
		eval := make(map[string]float64, len(out)+1)
		for i, name := range s.m.Outputs {
			eval[name] = out[i]
		}
		mean := 0.0
		for _, d := range req.Domains {
			mean += out[s.ceIndex[d]]
		}
		eval["mean_ce"] = mean / float64(len(req.Domains))
		points = append(points, Point{
			Step:      step,
			Tokens:    step * req.TokensPerStep,
			TrainLoss: out[s.train],
			Eval:      eval,
			WallTime:  float64(step) * flops / modelledFLOPS,
		})
	}
	return Run{Points: points}, nil
}

// scale maps the request's scale to one the model was fitted on: by name, else by the
// nearest size to the request's parameter count (or the count read from the name).
func (s *dataModelSource) scale(req Request) (DataModelScale, error) {
	for _, sc := range s.m.Scales {
		if strings.EqualFold(sc.Name, req.Scale) {
			return sc, nil
		}
	}
	params := req.Params
	if params == 0 {
		params, _ = parseScaleName(req.Scale)
	}
	if params > 0 {
		best, bestDist := -1, math.Inf(1)
		for i, sc := range s.m.Scales {
			if !(sc.SizeM > 0) {
				continue
			}
			if d := math.Abs(math.Log(params / (sc.SizeM * 1e6))); d < bestDist {
				best, bestDist = i, d
			}
		}
		if best >= 0 && bestDist <= math.Log(scaleMatchRatio) {
			return s.m.Scales[best], nil
		}
	}
	known := make([]string, len(s.m.Scales))
	for i, sc := range s.m.Scales {
		known[i] = fmt.Sprintf("%s (%gM)", sc.Name, sc.SizeM)
	}
	return DataModelScale{}, fmt.Errorf("data model %s: scale %q with %g params is unknown to the model (it knows %s; a parameter count must be within a factor %g of one)",
		s.m.Name, req.Scale, req.Params, strings.Join(known, ", "), scaleMatchRatio)
}
