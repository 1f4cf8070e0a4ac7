package benchmark

import (
	"fmt"
	"io"
	"math"
	"sort"
	"text/tabwriter"

	"github.com/mixopt/mixopt/internal/sim"
)

// The landscape report says what the objective itself allows a policy: where each scale's
// best mixture lies and how it does at the target (what cheap trials can teach, and what a
// recommendation built on them alone is worth), and how wide the optimum's basin is along
// the edge of its two largest domains (what precision a target run must reach).

// ScaleOptimum is the best mixture at one scale, at the target's steps, with its regret at
// the target.
type ScaleOptimum struct {
	Scale        string    `json:"scale"`
	Mixture      []float64 `json:"mixture"`
	Value        float64   `json:"value"`
	TargetRegret float64   `json:"target_regret"`
}

// ProfilePoint is the target regret of a mixture on the line through f*'s mixture that
// moves weight between its two largest domains.
type ProfilePoint struct {
	Share  float64 `json:"share"` // of the larger domain
	Regret float64 `json:"regret"`
}

// Landscape is the report for one objective.
type Landscape struct {
	Objective string         `json:"objective"`
	FStar     float64        `json:"f_star"`
	FStarMix  []float64      `json:"f_star_mixture"`
	Domains   [2]string      `json:"profile_domains"` // the larger, then the smaller
	Optima    []ScaleOptimum `json:"scale_optima"`
	Profile   []ProfilePoint `json:"profile"`
}

// ProfileHalfWidth and ProfileStep set the line of the profile: the larger domain's
// share from f*'s −0.15 to +0.15 in steps of 0.01, kept inside [0, its share + the
// smaller's].
const (
	ProfileHalfWidth = 0.15
	ProfileStep      = 0.01
)

// MapLandscape runs FStar's dense search at every scale of the data model and evaluates
// the profile.
func MapLandscape(m *sim.DataModel, objectiveName string, samples int, seed uint64) (*Landscape, error) {
	p, err := Problem(m, objectiveName, 1, seed)
	if err != nil {
		return nil, err
	}
	o := newObjective(m, objectiveName, &p)
	fstar, fmix := o.optimumAt(o.target, samples, seed)
	ls := &Landscape{Objective: objectiveName, FStar: fstar, FStarMix: fmix}
	for sc := range p.Scales {
		v, w := fstar, fmix
		if sc != o.target {
			v, w = o.optimumAt(sc, samples, seed)
		}
		ls.Optima = append(ls.Optima, ScaleOptimum{Scale: p.Scales[sc].Name, Mixture: w, Value: v, TargetRegret: o.regret(w, fstar)})
	}
	order := make([]int, len(fmix))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return fmix[order[a]] > fmix[order[b]] })
	big, small := order[0], order[1]
	ls.Domains = [2]string{m.Domains[big], m.Domains[small]}
	pair := fmix[big] + fmix[small]
	n := int(math.Round(ProfileHalfWidth / ProfileStep))
	for i := -n; i <= n; i++ {
		share := fmix[big] + float64(i)*ProfileStep
		if share < 0 || share > pair {
			continue
		}
		w := append([]float64(nil), fmix...)
		w[big], w[small] = share, pair-share
		ls.Profile = append(ls.Profile, ProfilePoint{Share: share, Regret: o.regret(w, fstar)})
	}
	return ls, nil
}

// WriteLandscape prints the report as two aligned tables.
func WriteLandscape(w io.Writer, ls *Landscape) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "objective %s, f* = %.6f at %.4f\n\n", ls.Objective, ls.FStar, ls.FStarMix)
	fmt.Fprintln(tw, "scale\tits best mixture\tvalue there\tregret of that mixture at the target")
	for _, s := range ls.Optima {
		fmt.Fprintf(tw, "%s\t%.3f\t%.5f\t%.5f\n", s.Scale, s.Mixture, s.Value, s.TargetRegret)
	}
	fmt.Fprintf(tw, "\nregret at the target along f*'s %s–%s edge (other weights as in f*)\n", ls.Domains[0], ls.Domains[1])
	fmt.Fprintf(tw, "%s share\tregret\n", ls.Domains[0])
	for _, pt := range ls.Profile {
		fmt.Fprintf(tw, "%.4f\t%.5f\n", pt.Share, pt.Regret)
	}
	return tw.Flush()
}

// WriteLandscapeFile writes the report as dir/landscape.json.
func WriteLandscapeFile(dir string, ls *Landscape) error {
	return writeJSON(dir, "landscape.json", ls)
}
