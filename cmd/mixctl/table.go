package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

const none = "<none>"

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func studyState(st pb.StudyState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "STUDY_STATE_"))
}

func trialState(st pb.TrialState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "TRIAL_STATE_"))
}

func printStudies(w io.Writer, studies []*pb.StudyStatus) {
	tw := newTable(w)
	fmt.Fprintln(tw, "STUDY\tNAME\tSTATE\tPOLICY\tTRIALS (run/ok/fail/other)\tBUDGET SPENT (FLOPs)\tGPU-HOURS\tBEST\tMIXTURE")
	if len(studies) == 0 {
		fmt.Fprintln(tw, none+"\t\t\t\t\t\t\t\t")
	}
	for _, s := range studies {
		st, spec := s.Study, s.Study.Spec
		n := s.TrialsByState
		other := n["pending"] + n["stopped"] + n["lost"]
		best, mix := none, none
		if r := s.Recommendation; r != nil {
			best = formatValue(r)
			mix = formatMixture(spec, r.Mixture)
		}
		name := spec.Name
		if name == "" {
			name = none
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d/%d/%d\t%s\t%.1f\t%s\t%s\n", st.Id, name, studyState(st.State), spec.Policy,
			n["running"], n["succeeded"], n["failed"], other,
			formatBudget(st.SpentFlops, spec.BudgetFlops), st.SpentGpuHours, best, mix)
	}
	tw.Flush()
}

func printWorkers(w io.Writer, workers []*pb.Worker, now time.Time) {
	tw := newTable(w)
	fmt.Fprintln(tw, "WORKER\tHOST\tSTATE\tSLOTS\tGPUS\tRUNNING TRIALS\tLAST SEEN\tKIND\tSOURCE / INTERPRETER\tLABELS")
	if len(workers) == 0 {
		fmt.Fprintln(tw, none+"\t\t\t\t\t\t\t\t\t")
	}
	for _, wk := range workers {
		running := none
		if len(wk.RunningTrials) > 0 {
			parts := make([]string, len(wk.RunningTrials))
			for i, id := range wk.RunningTrials {
				parts[i] = fmt.Sprint(id)
			}
			running = strings.Join(parts, ",")
		}
		slots := wk.SimulatedCapacity
		if slots == 0 {
			slots = int32(max(len(wk.Gpus), 1))
		}
		kind, source, labels := formatIdentity(wk.Identity)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", wk.Id, wk.Hostname,
			strings.ToLower(strings.TrimPrefix(wk.State.String(), "WORKER_STATE_")), slots, len(wk.Gpus), running,
			formatAgo(wk.LastHeartbeatUnixMs, now), kind, source, labels)
	}
	tw.Flush()
}

// formatIdentity shows what a worker said it is: its kind, then a simulated worker's source
// or a real one's interpreter, then its labels.
func formatIdentity(id *pb.WorkerIdentity) (kind, source, labels string) {
	kind, source, labels = none, none, none
	if id == nil {
		return kind, source, labels
	}
	if id.Kind != pb.WorkerKind_WORKER_KIND_UNSPECIFIED {
		kind = strings.ToLower(strings.TrimPrefix(id.Kind.String(), "WORKER_KIND_"))
	}
	switch {
	case id.Kind == pb.WorkerKind_WORKER_KIND_SIMULATED && id.SimSource != "":
		source = id.SimSource
	case id.Interpreter != nil:
		in := id.Interpreter
		parts := []string{"python " + in.PythonVersion}
		if in.TorchVersion == "" {
			parts = append(parts, "no torch")
		} else {
			parts = append(parts, "torch "+in.TorchVersion)
			switch {
			case in.CudaVersion == "":
				parts = append(parts, "cpu build")
			case in.CudaAvailable:
				parts = append(parts, "cuda "+in.CudaVersion)
			default:
				parts = append(parts, "cuda "+in.CudaVersion+" (no device)")
			}
			if in.CompileAvailable {
				parts = append(parts, "compile")
			} else {
				parts = append(parts, "no compile")
			}
		}
		source = strings.Join(parts, ", ")
	}
	if len(id.Labels) > 0 {
		keys := make([]string, 0, len(id.Labels))
		for k := range id.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			keys[i] = k + "=" + id.Labels[k]
		}
		labels = strings.Join(keys, ",")
	}
	return kind, source, labels
}

func printTrials(w io.Writer, trials []*pb.Trial) {
	tw := newTable(w)
	fmt.Fprintln(tw, "TRIAL\tSTATE\tSCALE\tSTEPS\tDONE\tATTEMPT\tVALUE\tMIXTURE")
	if len(trials) == 0 {
		fmt.Fprintln(tw, none+"\t\t\t\t\t\t\t")
	}
	for _, t := range trials {
		value := none
		if t.HasValue {
			value = fmt.Sprintf("%.4f", t.LastValue)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", t.Id, trialState(t.State), t.Scale, t.Steps,
			t.StepsDone, t.Attempt, value, formatWeights(t.Mixture))
	}
	tw.Flush()
}

func printTrial(w io.Writer, r *pb.GetTrialResponse) {
	t := r.Trial
	fmt.Fprintf(w, "trial %d of study %d: %s, scale %s, %d/%d steps, attempt %d\n",
		t.Id, t.StudyId, trialState(t.State), t.Scale, t.StepsDone, t.Steps, t.Attempt)
	fmt.Fprintf(w, "mixture: %s\n", formatWeights(t.Mixture))
	if t.FailureReason != "" {
		fmt.Fprintf(w, "reason: %s\n", t.FailureReason)
	}
	if t.SourceRun != "" {
		fmt.Fprintf(w, "replayed from: %s (L1 distance %.4f)\n", t.SourceRun, t.SourceDistance)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SEQ\tSTEP\tTOKENS\tTRAIN LOSS\tEVAL")
	for _, p := range r.Points {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.4f\t%s\n", p.Seq, p.Step, p.Tokens, p.TrainLoss, formatEval(p.Eval))
	}
	tw.Flush()
}

func printRecommendation(w io.Writer, spec *pb.StudySpec, r *pb.Recommendation) {
	fmt.Fprintf(w, "study %d: %s = %s (%s, %d trials)\n", r.StudyId, spec.Objective.Metric, formatValue(r), r.Basis, r.Trials)
	if r.Label != "" {
		fmt.Fprintf(w, "  %s\n", r.Label)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "DOMAIN\tWEIGHT")
	for i, d := range spec.Domains {
		if i < len(r.Mixture) {
			fmt.Fprintf(tw, "%s\t%.4f\n", d.Name, r.Mixture[i])
		}
	}
	tw.Flush()
}

// formatValue shows a recommendation's value with its interval only where a model gave
// one, and tags what it rests on: observed at a fidelity, or extrapolated because no
// target run has finished (the full sentence is the recommendation's label).
func formatValue(r *pb.Recommendation) string {
	v := fmt.Sprintf("%.4f", r.Value)
	if r.HasInterval {
		v = fmt.Sprintf("%.4f [%.4f, %.4f]", r.Value, r.Lower, r.Upper)
	}
	switch {
	case r.ValueObserved:
		v += fmt.Sprintf(" observed at %s/%d", r.ObservedScale, r.ObservedSteps)
	case !r.TargetObserved:
		v += " extrapolated"
	}
	switch r.StudyState {
	case pb.StudyState_STUDY_STATE_CANCELLED, pb.StudyState_STUDY_STATE_FAILED:
		v += " (study " + studyState(r.StudyState) + ")"
	}
	return v
}

func formatMixture(spec *pb.StudySpec, w []float64) string {
	parts := make([]string, 0, len(w))
	for i, v := range w {
		if i < len(spec.Domains) {
			parts = append(parts, fmt.Sprintf("%s=%.2f", spec.Domains[i].Name, v))
		}
	}
	return strings.Join(parts, " ")
}

func formatWeights(w []float64) string {
	parts := make([]string, len(w))
	for i, v := range w {
		parts[i] = fmt.Sprintf("%.3f", v)
	}
	return strings.Join(parts, " ")
}

func formatEval(m map[string]float64) string {
	if len(m) == 0 {
		return none
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%.4f", k, m[k])
	}
	return strings.Join(parts, " ")
}

// formatBudget shows spent / total FLOPs with the share spent.
func formatBudget(spent, total float64) string {
	pct := 0.0
	if total > 0 {
		pct = 100 * spent / total
	}
	return fmt.Sprintf("%s / %s (%.0f%%)", formatFlops(spent), formatFlops(total), pct)
}

func formatFlops(f float64) string {
	if f == 0 {
		return "0"
	}
	exp := int(math.Floor(math.Log10(f)))
	return fmt.Sprintf("%.2fe%d", f/math.Pow(10, float64(exp)), exp)
}

func formatAgo(ms int64, now time.Time) string {
	if ms == 0 {
		return none
	}
	return now.Sub(time.UnixMilli(ms)).Round(time.Second).String() + " ago"
}
