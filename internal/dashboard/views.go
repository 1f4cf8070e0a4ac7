package dashboard

import (
	"context"
	"math"
	"sort"
	"strings"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// The JSON the page reads. Plain structs rather than protojson: the page wants numbers as
// numbers (protojson writes 64-bit integers as strings) and a few derived fields, and the
// wire API can change without breaking the page.

type scaleJSON struct {
	Name         string  `json:"name"`
	Params       float64 `json:"params"`
	FlopsPerStep float64 `json:"flopsPerStep"`
	// PoolSize is the scale's candidate pool (0: any mixture); PriorRuns the prior runs at
	// it, observations the study did not pay for.
	PoolSize  int `json:"poolSize"`
	PriorRuns int `json:"priorRuns"`
}

type recJSON struct {
	Mixture []float64 `json:"mixture"`
	Value   float64   `json:"value"`
	Lower   float64   `json:"lower"`
	Upper   float64   `json:"upper"`
	Basis   string    `json:"basis"`
	Trials  int32     `json:"trials"`
	// What the value rests on (pb.Recommendation): the page shows an interval only when
	// HasInterval, and the label beside every value.
	HasInterval    bool   `json:"hasInterval"`
	TargetObserved bool   `json:"targetObserved"`
	ValueObserved  bool   `json:"valueObserved"`
	ObservedScale  string `json:"observedScale"`
	ObservedSteps  int64  `json:"observedSteps"`
	Label          string `json:"label"`
}

type studyJSON struct {
	ID             uint64           `json:"id"`
	Name           string           `json:"name"`
	State          string           `json:"state"`
	Policy         string           `json:"policy"`
	Domains        []string         `json:"domains"`
	Scales         []scaleJSON      `json:"scales"`
	TargetScale    string           `json:"targetScale"`
	TargetSteps    int64            `json:"targetSteps"`
	Metric         string           `json:"metric"`
	Maximize       bool             `json:"maximize"`
	BudgetFlops    float64          `json:"budgetFlops"`
	SpentFlops     float64          `json:"spentFlops"`
	CommittedFlops float64          `json:"committedFlops"`
	TrialsByState  map[string]int32 `json:"trialsByState"`
	TrialsCreated  int32            `json:"trialsCreated"`
	CreateTimeMs   int64            `json:"createTimeMs"`
	EndTimeMs      int64            `json:"endTimeMs"`
	EndReason      string           `json:"endReason"`
	Recommendation *recJSON         `json:"recommendation"`
}

type trialJSON struct {
	ID            uint64    `json:"id"`
	State         string    `json:"state"`
	Scale         string    `json:"scale"`
	Steps         int64     `json:"steps"`
	StepsDone     int64     `json:"stepsDone"`
	Mixture       []float64 `json:"mixture"`
	Value         *float64  `json:"value"`
	Attempt       int32     `json:"attempt"`
	WorkerID      uint64    `json:"workerId"`
	ComputeFlops  float64   `json:"computeFlops"`
	CreateTimeMs  int64     `json:"createTimeMs"`
	StartTimeMs   int64     `json:"startTimeMs"`
	EndTimeMs     int64     `json:"endTimeMs"`
	FailureReason string    `json:"failureReason"`
	SourceRun     string    `json:"sourceRun"`
}

type curveJSON struct {
	TrialID uint64 `json:"trialId"`
	Scale   string `json:"scale"`
	State   string `json:"state"`
	// Points are [step, objective] pairs in step order.
	Points [][2]float64 `json:"points"`
}

// progressJSON is one step of "best objective so far against compute spent": a trial ended,
// compute spent rose to ComputeFlops, and the best objective seen at Scale became Best.
type progressJSON struct {
	TrialID      uint64  `json:"trialId"`
	Scale        string  `json:"scale"`
	ComputeFlops float64 `json:"computeFlops"`
	Best         float64 `json:"best"`
}

type studyDetailJSON struct {
	Study    studyJSON      `json:"study"`
	Trials   []trialJSON    `json:"trials"`
	Curves   []curveJSON    `json:"curves"`
	Progress []progressJSON `json:"progress"`
	Spend    []spendJSON    `json:"spendByScale"`
}

// spendJSON is the compute a study's trials spent at one scale (steps done × FLOPs per
// step, failed trials too), in the spec's scale order.
type spendJSON struct {
	Scale  string  `json:"scale"`
	Flops  float64 `json:"flops"`
	Trials int     `json:"trials"`
}

type workerJSON struct {
	ID        uint64   `json:"id"`
	Hostname  string   `json:"hostname"`
	State     string   `json:"state"`
	GPUs      []string `json:"gpus"`
	Simulated int32    `json:"simulatedCapacity"`
	// Kind is what the worker said it is ("real", "simulated"); an old worker that said
	// nothing counts as real, as the scheduler's selector counts it.
	Kind            string   `json:"kind"`
	SimSource       string   `json:"simSource"`
	LastHeartbeatMs int64    `json:"lastHeartbeatMs"`
	RunningTrials   []uint64 `json:"runningTrials"`
}

func enumName(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }

func trialState(st pb.TrialState) string { return enumName(st.String(), "TRIAL_STATE_") }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// finiteOr0 keeps NaN and Inf, which encoding/json refuses, out of the answer.
func finiteOr0(v float64) float64 {
	if finite(v) {
		return v
	}
	return 0
}

func finiteSlice(vs []float64) []float64 {
	out := make([]float64, len(vs))
	for i, v := range vs {
		out[i] = finiteOr0(v)
	}
	return out
}

func studyView(st *pb.StudyStatus) studyJSON {
	s, spec := st.GetStudy(), st.GetStudy().GetSpec()
	v := studyJSON{
		ID: s.GetId(), Name: spec.GetName(), State: enumName(s.GetState().String(), "STUDY_STATE_"),
		Policy: spec.GetPolicy(), Domains: []string{}, Scales: []scaleJSON{},
		TargetScale: spec.GetTarget().GetScale(), TargetSteps: spec.GetTarget().GetSteps(),
		Metric: spec.GetObjective().GetMetric(), Maximize: spec.GetObjective().GetMaximize(),
		BudgetFlops: finiteOr0(spec.GetBudgetFlops()), SpentFlops: finiteOr0(s.GetSpentFlops()),
		CommittedFlops: finiteOr0(st.GetCommittedFlops()), TrialsByState: st.GetTrialsByState(),
		TrialsCreated: s.GetTrialsCreated(), CreateTimeMs: s.GetCreateTimeUnixMs(),
		EndTimeMs: s.GetEndTimeUnixMs(), EndReason: s.GetEndReason(),
	}
	if v.TrialsByState == nil {
		v.TrialsByState = map[string]int32{}
	}
	for _, d := range spec.GetDomains() {
		v.Domains = append(v.Domains, d.GetName())
	}
	prior := map[string]int{}
	for _, r := range spec.GetPriorRuns() {
		prior[r.GetScale()]++
	}
	for _, sc := range spec.GetScales() {
		v.Scales = append(v.Scales, scaleJSON{Name: sc.GetName(), Params: finiteOr0(sc.GetParams()), FlopsPerStep: finiteOr0(sc.GetFlopsPerStep()),
			PoolSize: len(sc.GetPool()), PriorRuns: prior[sc.GetName()]})
	}
	if r := st.GetRecommendation(); r != nil && finite(r.GetValue()) {
		v.Recommendation = &recJSON{
			Mixture: finiteSlice(r.GetMixture()), Value: r.GetValue(),
			Lower: finiteOr0(r.GetLower()), Upper: finiteOr0(r.GetUpper()),
			Basis: r.GetBasis(), Trials: r.GetTrials(),
			HasInterval: r.GetHasInterval(), TargetObserved: r.GetTargetObserved(), ValueObserved: r.GetValueObserved(),
			ObservedScale: r.GetObservedScale(), ObservedSteps: r.GetObservedSteps(), Label: r.GetLabel(),
		}
	}
	return v
}

func flopsPerStep(spec *pb.StudySpec) map[string]float64 {
	m := map[string]float64{}
	for _, sc := range spec.GetScales() {
		m[sc.GetName()] = sc.GetFlopsPerStep()
	}
	return m
}

func trialView(t *pb.Trial, fps map[string]float64) trialJSON {
	v := trialJSON{
		ID: t.GetId(), State: trialState(t.GetState()), Scale: t.GetScale(), Steps: t.GetSteps(),
		StepsDone: t.GetStepsDone(), Mixture: finiteSlice(t.GetMixture()), Attempt: t.GetAttempt(),
		WorkerID: t.GetWorkerId(), ComputeFlops: finiteOr0(float64(t.GetStepsDone()) * fps[t.GetScale()]),
		CreateTimeMs: t.GetCreateTimeUnixMs(), StartTimeMs: t.GetStartTimeUnixMs(),
		EndTimeMs: t.GetEndTimeUnixMs(), FailureReason: t.GetFailureReason(), SourceRun: t.GetSourceRun(),
	}
	if t.GetHasValue() && finite(t.GetLastValue()) {
		val := t.GetLastValue()
		v.Value = &val
	}
	return v
}

// metricValue is the objective metric of a point, as the scheduler reads it.
func metricValue(p *pb.CurvePoint, metric string) (float64, bool) {
	if metric == "train_loss" {
		return p.GetTrainLoss(), true
	}
	v, ok := p.GetEval()[metric]
	return v, ok
}

// thin keeps at most max points, evenly spaced, always with the last one (the value the
// trial ended at).
func thin(pts [][2]float64, max int) [][2]float64 {
	if len(pts) <= max {
		return pts
	}
	out := make([][2]float64, 0, max)
	for i := range max - 1 {
		out = append(out, pts[i*(len(pts)-1)/(max-1)])
	}
	return append(out, pts[len(pts)-1])
}

func detail(ctx context.Context, src Source, st *pb.StudyStatus, trials []*pb.Trial) (*studyDetailJSON, error) {
	spec := st.GetStudy().GetSpec()
	fps := flopsPerStep(spec)
	d := &studyDetailJSON{Study: studyView(st), Trials: []trialJSON{}, Curves: []curveJSON{}, Progress: []progressJSON{}}
	for _, t := range trials {
		d.Trials = append(d.Trials, trialView(t, fps))
	}
	sort.Slice(d.Trials, func(i, j int) bool { return d.Trials[i].ID < d.Trials[j].ID })

	// Curves of the most recent trials that have started.
	var started []*pb.Trial
	for _, t := range trials {
		if t.GetAttempt() > 0 && t.GetLastSeq() > 0 {
			started = append(started, t)
		}
	}
	sort.Slice(started, func(i, j int) bool { return started[i].GetId() < started[j].GetId() })
	if len(started) > MaxCurves {
		started = started[len(started)-MaxCurves:]
	}
	metric := spec.GetObjective().GetMetric()
	for _, t := range started {
		tt, pts, err := src.Trial(ctx, t.GetId())
		if err != nil {
			return nil, err
		}
		c := curveJSON{TrialID: tt.GetId(), Scale: tt.GetScale(), State: trialState(tt.GetState())}
		for _, p := range pts {
			if v, ok := metricValue(p, metric); ok && finite(v) {
				c.Points = append(c.Points, [2]float64{float64(p.GetStep()), v})
			}
		}
		if len(c.Points) > 0 {
			c.Points = thin(c.Points, MaxCurvePoints)
			d.Curves = append(d.Curves, c)
		}
	}
	d.Progress = progress(trials, fps, spec.GetObjective().GetMaximize())
	d.Spend = spendByScale(spec, trials, fps)
	return d, nil
}

func spendByScale(spec *pb.StudySpec, trials []*pb.Trial, fps map[string]float64) []spendJSON {
	out := []spendJSON{}
	at := map[string]int{}
	for _, sc := range spec.GetScales() {
		at[sc.GetName()] = len(out)
		out = append(out, spendJSON{Scale: sc.GetName()})
	}
	for _, t := range trials {
		i, ok := at[t.GetScale()]
		if !ok || t.GetStepsDone() <= 0 {
			continue
		}
		out[i].Flops += finiteOr0(fps[t.GetScale()] * float64(t.GetStepsDone()))
		out[i].Trials++
	}
	return out
}

// progress walks the ended trials in the order they ended, adding up the compute they
// spent (failed ones too: they cost as much) and tracking the best objective per scale.
// Objectives are compared within a scale only: a small model's loss is not a large one's.
func progress(trials []*pb.Trial, fps map[string]float64, maximize bool) []progressJSON {
	var ended []*pb.Trial
	for _, t := range trials {
		if t.GetEndTimeUnixMs() > 0 {
			ended = append(ended, t)
		}
	}
	sort.Slice(ended, func(i, j int) bool {
		a, b := ended[i], ended[j]
		if a.GetEndTimeUnixMs() != b.GetEndTimeUnixMs() {
			return a.GetEndTimeUnixMs() < b.GetEndTimeUnixMs()
		}
		return a.GetId() < b.GetId()
	})
	out := []progressJSON{}
	best := map[string]float64{}
	spent := 0.0
	for _, t := range ended {
		if c := float64(t.GetStepsDone()) * fps[t.GetScale()]; finite(c) {
			spent += c
		}
		ok := t.GetState() == pb.TrialState_TRIAL_STATE_SUCCEEDED || t.GetState() == pb.TrialState_TRIAL_STATE_STOPPED
		v := t.GetLastValue()
		if !ok || !t.GetHasValue() || !finite(v) {
			continue
		}
		b, seen := best[t.GetScale()]
		if !seen || (maximize && v > b) || (!maximize && v < b) {
			best[t.GetScale()] = v
		}
		out = append(out, progressJSON{TrialID: t.GetId(), Scale: t.GetScale(), ComputeFlops: spent, Best: best[t.GetScale()]})
	}
	return out
}

func workerView(w *pb.Worker) workerJSON {
	v := workerJSON{
		ID: w.GetId(), Hostname: w.GetHostname(), State: enumName(w.GetState().String(), "WORKER_STATE_"),
		GPUs: []string{}, Simulated: w.GetSimulatedCapacity(), LastHeartbeatMs: w.GetLastHeartbeatUnixMs(),
		RunningTrials: w.GetRunningTrials(),
		Kind:          "real", SimSource: w.GetIdentity().GetSimSource(),
	}
	if k := w.GetIdentity().GetKind(); k != pb.WorkerKind_WORKER_KIND_UNSPECIFIED {
		v.Kind = enumName(k.String(), "WORKER_KIND_")
	}
	if v.RunningTrials == nil {
		v.RunningTrials = []uint64{}
	}
	for _, g := range w.GetGpus() {
		v.GPUs = append(v.GPUs, g.GetName())
	}
	return v
}
