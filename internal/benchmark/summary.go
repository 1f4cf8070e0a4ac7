package benchmark

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
)

// Grid is the cost axis (TRE) on which seed curves are aligned: log-spaced from 1e-3 of
// a target run to the budget.
func Grid(budget float64) []float64 {
	const n = 600
	lo := math.Log(1e-3)
	hi := math.Log(budget)
	g := make([]float64, n)
	for i := range g {
		g[i] = math.Exp(lo + (hi-lo)*float64(i)/float64(n-1))
	}
	g[n-1] = budget
	return g
}

// regretAt is the run's regret after cost c: that of the last recommendation made by then
// (+Inf before the first).
func (r *Run) regretAt(c float64) float64 {
	i := sort.Search(len(r.Curve), func(i int) bool { return r.Curve[i].Cost > c*(1+1e-12) })
	if i == 0 {
		return math.Inf(1)
	}
	return r.Curve[i-1].Regret
}

func (r *Run) final() float64 {
	if len(r.Curve) == 0 {
		return math.Inf(1)
	}
	return r.Curve[len(r.Curve)-1].Regret
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	if math.IsInf(s[lo], 1) || math.IsInf(s[hi], 1) {
		return s[hi]
	}
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// PolicySummary aggregates one policy's seeds in one setting.
type PolicySummary struct {
	Policy      string             `json:"policy"`
	Setting     Setting            `json:"setting"`
	Seeds       int                `json:"seeds"`
	FinalMedian float64            `json:"final_regret_median"`
	FinalQ25    float64            `json:"final_regret_q25"`
	FinalQ75    float64            `json:"final_regret_q75"`
	Grid        []float64          `json:"grid_tre"`
	Median      []float64          `json:"median_regret"`
	Q25         []float64          `json:"q25_regret"`
	Q75         []float64          `json:"q75_regret"`
	Trials      float64            `json:"trials_median"`
	SpendBy     map[string]float64 `json:"spend_by_scale_tre_mean"`
	DecisionP50 float64            `json:"decision_ms_p50"`
	DecisionP99 float64            `json:"decision_ms_p99"`
	HitCap      int                `json:"runs_hitting_trial_cap"`
	Errors      []string           `json:"errors,omitempty"`
	// Cost to reach fixed regret levels (reach-and-stay and first hit), +Inf when never.
	Reach map[string]Reach `json:"reach"`
	// Speedups over the baselines at their own median final regret.
	Speedup map[string]Speedup `json:"speedup"`
}

// Reach is the cost (TRE) to reach a regret level on the seed-median curve.
type Reach struct {
	Stay  float64 `json:"reach_and_stay"`
	First float64 `json:"first_hit"`
}

// Speedup of a policy over a baseline B at r_B = max(B's median final regret, Floor).
type Speedup struct {
	Level      float64 `json:"level"`
	Value      float64 `json:"speedup"`       // B's cost ÷ this policy's, reach-and-stay
	First      float64 `json:"speedup_first"` // the same with first hits
	LowerBound bool    `json:"lower_bound"`   // B never stayed: its cost counted as the budget
	UpperBound bool    `json:"upper_bound"`   // this policy never stayed: its cost counted as the budget
}

// reach returns the reach-and-stay and first-hit cost of level r on a median curve.
func reach(grid, median []float64, r float64) Reach {
	out := Reach{Stay: math.Inf(1), First: math.Inf(1)}
	for i := range grid {
		if median[i] <= r {
			out.First = grid[i]
			break
		}
	}
	for i := len(grid) - 1; i >= 0; i-- {
		if median[i] > r {
			if i+1 < len(grid) {
				out.Stay = grid[i+1]
			}
			return out
		}
	}
	out.Stay = grid[0]
	return out
}

// runGroup names the runs of one policy in one setting.
type runGroup struct {
	setting Setting
	policy  string
}

// groupRuns collects the runs per (setting, policy), in the order they first appear.
func groupRuns(res *Result) ([]runGroup, map[runGroup][]*Run) {
	groups := map[runGroup][]*Run{}
	var order []runGroup
	for i := range res.Runs {
		r := &res.Runs[i]
		k := runGroup{r.Setting, r.Policy}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	return order, groups
}

// WriteCurves prints, per setting, each policy's seed-median regret after each of the
// given costs (TRE): the numbers behind the plots, at the costs a reader asks about.
// "-" is a cost before the median run's first recommendation.
func WriteCurves(w io.Writer, res *Result, costs []float64) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	order, groups := groupRuns(res)
	var last Setting
	for i, k := range order {
		if i == 0 || k.setting != last {
			fmt.Fprintf(tw, "\nseed-median regret, %s\npolicy", k.setting)
			for _, c := range costs {
				fmt.Fprintf(tw, "\t@%g", c)
			}
			fmt.Fprintln(tw, "\t")
			last = k.setting
		}
		fmt.Fprint(tw, k.policy)
		col := make([]float64, len(groups[k]))
		for _, c := range costs {
			for j, r := range groups[k] {
				col[j] = r.regretAt(c)
			}
			if m := quantile(col, 0.5); math.IsInf(m, 1) {
				fmt.Fprint(tw, "\t-")
			} else {
				fmt.Fprintf(tw, "\t%.5f", m)
			}
		}
		fmt.Fprintln(tw, "\t")
	}
	return tw.Flush()
}

// Levels are the fixed regret levels reported beside the baselines' own.
var Levels = []float64{0.01, 0.003, 0.001}

// Floor is the lowest regret level a speedup is measured at: below it a 1B run's seed
// noise decides (BENCHMARK.md, "Headline level").
const Floor = 0.001

// Baselines are the policies a team would pick instead of mfms, in the order reported.
var Baselines = []string{"random", "uniform", "regmix", "mfbo"}

// Summarise aggregates runs per (setting, policy) and computes speedups over the named
// baselines.
func Summarise(res *Result, baselines []string) []PolicySummary {
	grid := Grid(res.Budget)
	order, groups := groupRuns(res)
	var out []PolicySummary
	bySetting := map[Setting]map[string]*PolicySummary{}
	for _, k := range order {
		runs := groups[k]
		ps := PolicySummary{Policy: k.policy, Setting: k.setting, Seeds: len(runs), Grid: grid, SpendBy: map[string]float64{},
			Reach: map[string]Reach{}, Speedup: map[string]Speedup{}}
		var finals, trials, dms []float64
		for _, r := range runs {
			finals = append(finals, r.final())
			trials = append(trials, float64(r.Trials))
			dms = append(dms, r.DecisionMS...)
			for s, v := range r.SpendBy {
				ps.SpendBy[s] += v / float64(len(runs))
			}
			if r.HitCap {
				ps.HitCap++
			}
			if r.Err != "" {
				ps.Errors = append(ps.Errors, fmt.Sprintf("seed %d: %s", r.Seed, r.Err))
			}
		}
		ps.FinalMedian, ps.FinalQ25, ps.FinalQ75 = quantile(finals, 0.5), quantile(finals, 0.25), quantile(finals, 0.75)
		ps.Trials = quantile(trials, 0.5)
		ps.DecisionP50, ps.DecisionP99 = quantile(dms, 0.5), quantile(dms, 0.99)
		col := make([]float64, len(runs))
		for _, c := range grid {
			for i, r := range runs {
				col[i] = r.regretAt(c)
			}
			ps.Median = append(ps.Median, quantile(col, 0.5))
			ps.Q25 = append(ps.Q25, quantile(col, 0.25))
			ps.Q75 = append(ps.Q75, quantile(col, 0.75))
		}
		for _, l := range Levels {
			ps.Reach[fmt.Sprint(l)] = reach(grid, ps.Median, l)
		}
		out = append(out, ps)
	}
	for i := range out {
		if bySetting[out[i].Setting] == nil {
			bySetting[out[i].Setting] = map[string]*PolicySummary{}
		}
		bySetting[out[i].Setting][out[i].Policy] = &out[i]
	}
	for i := range out {
		a := &out[i]
		for _, bn := range baselines {
			b := bySetting[a.Setting][bn]
			if b == nil || b == a {
				continue
			}
			r := math.Max(b.FinalMedian, Floor)
			rb, ra := reach(grid, b.Median, r), reach(grid, a.Median, r)
			sp := Speedup{Level: r}
			cb, ca := rb.Stay, ra.Stay
			if math.IsInf(cb, 1) {
				cb, sp.LowerBound = res.Budget, true
			}
			if math.IsInf(ca, 1) {
				ca, sp.UpperBound = res.Budget, true
			}
			sp.Value = cb / ca
			fb, fa := rb.First, ra.First
			if math.IsInf(fb, 1) {
				fb = res.Budget
			}
			if math.IsInf(fa, 1) {
				fa = res.Budget
			}
			sp.First = fb / fa
			a.Speedup[bn] = sp
		}
	}
	return out
}

func fmtCost(c float64) string {
	if math.IsInf(c, 1) {
		return "never"
	}
	return fmt.Sprintf("%.3g", c)
}

func fmtSpeed(s Speedup, ok bool) string {
	if !ok {
		return "<none>"
	}
	p := ""
	switch {
	case s.LowerBound && !s.UpperBound:
		p = "≥"
	case s.UpperBound && !s.LowerBound:
		p = "≤"
	case s.UpperBound && s.LowerBound:
		p = "~"
	}
	return fmt.Sprintf("%s%.2f× (first %.2f×)", p, s.Value, s.First)
}

// WriteTable prints one block per setting.
func WriteTable(w io.Writer, res *Result, sums []PolicySummary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "world %s, objective %s, f* = %.6f at %.4f, budget %g TRE\n", res.World, res.Objective, res.FStar, res.FStarMix, res.Budget)
	var last Setting
	for i, s := range sums {
		if i == 0 || s.Setting != last {
			fmt.Fprintf(tw, "\n%s\n", s.Setting)
			fmt.Fprint(tw, "policy\tseeds\tfinal regret median [IQR]\tstay≤0.01\tstay≤0.003\tstay≤0.001\tfirst≤0.001")
			for _, b := range Baselines {
				fmt.Fprintf(tw, "\tvs %s", b)
			}
			fmt.Fprintln(tw, "\ttrials\tdecision p50/p99 ms\tspend by scale (TRE)\t")
			last = s.Setting
		}
		var spend []string
		names := make([]string, 0, len(s.SpendBy))
		for n := range s.SpendBy {
			names = append(names, n)
		}
		sort.Slice(names, func(a, b int) bool { return scaleOrder(names[a]) < scaleOrder(names[b]) })
		for _, n := range names {
			spend = append(spend, fmt.Sprintf("%s:%.2f", n, s.SpendBy[n]))
		}
		errs := ""
		if len(s.Errors) > 0 {
			errs = fmt.Sprintf(" (%d errors)", len(s.Errors))
		}
		if s.HitCap > 0 {
			errs += fmt.Sprintf(" (%d hit trial cap)", s.HitCap)
		}
		fmt.Fprintf(tw, "%s%s\t%d\t%.5f [%.5f, %.5f]\t%s\t%s\t%s\t%s",
			s.Policy, errs, s.Seeds, s.FinalMedian, s.FinalQ25, s.FinalQ75,
			fmtCost(s.Reach["0.01"].Stay), fmtCost(s.Reach["0.003"].Stay), fmtCost(s.Reach["0.001"].Stay), fmtCost(s.Reach["0.001"].First))
		for _, b := range Baselines {
			v, ok := s.Speedup[b]
			fmt.Fprintf(tw, "\t%s", fmtSpeed(v, ok))
		}
		fmt.Fprintf(tw, "\t%.0f\t%.0f/%.0f\t%s\t\n", s.Trials, s.DecisionP50, s.DecisionP99, strings.Join(spend, " "))
	}
	return tw.Flush()
}

// scaleOrder sorts scale names like 20M < 150M < 1B.
func scaleOrder(name string) float64 {
	var v float64
	var unit string
	if _, err := fmt.Sscanf(name, "%g%s", &v, &unit); err != nil {
		return math.Inf(1)
	}
	switch unit {
	case "B":
		v *= 1000
	}
	return v
}
