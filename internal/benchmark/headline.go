package benchmark

import (
	"fmt"
	"io"
	"math"
	"sort"
	"text/tabwriter"
)

// Headline is the protocol's headline for one world × objective × setting: the cost of a
// policy to reach and stay at r_B = max(the strongest baseline's median final regret,
// Floor), against that baseline's, and the speedups over every baseline.
type Headline struct {
	World     string  `json:"world"`
	Objective string  `json:"objective"`
	Setting   Setting `json:"setting"`
	Policy    string  `json:"policy"`
	// Best is the strongest baseline: the lowest median final regret (the cheaper
	// reach-and-stay among equals).
	Best     string  `json:"best_baseline"`
	Level    float64 `json:"level"`
	BestCost float64 `json:"best_baseline_cost_tre"` // reach-and-stay, +Inf (-1 in JSON) when never
	Cost     float64 `json:"cost_tre"`
	// Speedup is over Best at Level; Vs over each baseline at its own level.
	Speedup Speedup            `json:"speedup"`
	Vs      map[string]Speedup `json:"vs"`
	Final   float64            `json:"final_regret_median"`
}

// Headlines computes the headline of policy in every setting of one result.
func Headlines(res *Result, sums []PolicySummary, policy string) []Headline {
	bySetting := map[Setting]map[string]*PolicySummary{}
	var order []Setting
	for i := range sums {
		s := &sums[i]
		if bySetting[s.Setting] == nil {
			bySetting[s.Setting] = map[string]*PolicySummary{}
			order = append(order, s.Setting)
		}
		bySetting[s.Setting][s.Policy] = s
	}
	var out []Headline
	for _, set := range order {
		a := bySetting[set][policy]
		if a == nil {
			continue
		}
		var best *PolicySummary
		for _, bn := range Baselines {
			b := bySetting[set][bn]
			if b == nil || bn == policy {
				continue
			}
			if best == nil || b.FinalMedian < best.FinalMedian ||
				(b.FinalMedian == best.FinalMedian && stayCost(b, math.Max(b.FinalMedian, Floor)) < stayCost(best, math.Max(best.FinalMedian, Floor))) {
				best = b
			}
		}
		if best == nil {
			continue
		}
		h := Headline{World: res.World, Objective: res.Objective, Setting: set, Policy: policy, Best: best.Policy,
			Level: math.Max(best.FinalMedian, Floor), Speedup: a.Speedup[best.Policy], Vs: map[string]Speedup{}, Final: a.FinalMedian}
		h.BestCost, h.Cost = stayCost(best, h.Level), stayCost(a, h.Level)
		for bn, sp := range a.Speedup {
			h.Vs[bn] = sp
		}
		out = append(out, h)
	}
	return out
}

func stayCost(s *PolicySummary, level float64) float64 {
	return reach(s.Grid, s.Median, level).Stay
}

// Aggregate is the median and the worst speedup over the best baseline across headlines.
type Aggregate struct {
	Cases  int     `json:"cases"`
	Median float64 `json:"median_speedup"`
	Worst  float64 `json:"worst_speedup"`
	// WorstCase names the headline with the worst speedup.
	WorstCase string `json:"worst_case"`
	// AtLeastOne counts the cases with a speedup ≥ 1 where the policy did reach and stay
	// at the level (an upper bound "≤ 1×" does not count).
	AtLeastOne int `json:"cases_at_least_1x"`
}

// Aggregated summarises headlines (NaN speedups, where no baseline ran, are left out).
func Aggregated(hs []Headline) Aggregate {
	var v []float64
	ag := Aggregate{Worst: math.Inf(1)}
	for _, h := range hs {
		x := h.Speedup.Value
		if math.IsNaN(x) {
			continue
		}
		v = append(v, x)
		if x < ag.Worst {
			ag.Worst, ag.WorstCase = x, fmt.Sprintf("%s %s %s", h.World, h.Objective, h.Setting)
		}
		if x >= 1 && !h.Speedup.UpperBound {
			ag.AtLeastOne++
		}
	}
	ag.Cases = len(v)
	if len(v) == 0 {
		ag.Worst = math.NaN()
	}
	ag.Median = quantile(v, 0.5)
	return ag
}

// WriteHeadlines prints one row per headline, then the aggregate.
func WriteHeadlines(w io.Writer, hs []Headline) error {
	if len(hs) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\nheadline: %s's cost to reach and stay at r_B = max(best baseline's median final regret, %g)\n", hs[0].Policy, Floor)
	fmt.Fprint(tw, "world\tobjective\tsetting\tbest baseline\tr_B\tits cost\tcost\tspeedup (first)")
	for _, b := range Baselines {
		fmt.Fprintf(tw, "\tvs %s", b)
	}
	fmt.Fprintln(tw, "\t")
	sorted := append([]Headline(nil), hs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.World != b.World {
			return a.World < b.World
		}
		return a.Objective < b.Objective
	})
	for _, h := range sorted {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.4g\t%s\t%s\t%s", h.World, h.Objective, h.Setting, h.Best, h.Level,
			fmtCost(h.BestCost), fmtCost(h.Cost), fmtSpeed(h.Speedup, true))
		for _, b := range Baselines {
			sp, ok := h.Vs[b]
			fmt.Fprintf(tw, "\t%s", fmtSpeed(sp, ok))
		}
		fmt.Fprintln(tw, "\t")
	}
	ag := Aggregated(hs)
	fmt.Fprintf(tw, "\naggregate over %d cases: median speedup over the best baseline %.2f×, worst %.2f× (%s), %d of %d at ≥ 1×\n",
		ag.Cases, ag.Median, ag.Worst, ag.WorstCase, ag.AtLeastOne, ag.Cases)
	return tw.Flush()
}

// WriteHeadlineFile writes headlines.json (every headline and the aggregate) into dir.
func WriteHeadlineFile(dir string, hs []Headline, command string) error {
	fix := func(x float64) float64 {
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return -1
		}
		return x
	}
	clean := make([]Headline, len(hs))
	for i, h := range hs {
		h.BestCost, h.Cost, h.Final = fix(h.BestCost), fix(h.Cost), fix(h.Final)
		clean[i] = h
	}
	ag := Aggregated(hs)
	ag.Median, ag.Worst = fix(ag.Median), fix(ag.Worst)
	return writeJSON(dir, "headlines.json", struct {
		Command   string     `json:"command"`
		Headlines []Headline `json:"headlines"`
		Aggregate Aggregate  `json:"aggregate"`
	}{command, clean, ag})
}
