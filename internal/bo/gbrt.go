package bo

import (
	"math"
	"sort"
)

// Gradient-boosted regression trees of LightGBM's kind: features binned into quantile
// histograms, trees grown leaf-wise (the leaf with the largest loss reduction splits next)
// under a leaf and a depth limit, squared loss, L2-regularised leaf values and shrinkage.
// It is the regression of the regmix baseline (RegMix fits LightGBM on its proxy runs).

// boostOptions configure a boosted-tree fit.
type boostOptions struct {
	rounds    int     // trees
	shrinkage float64 // learning rate
	maxLeaves int
	maxDepth  int
	minLeaf   int     // fewest samples in a leaf
	bins      int     // histogram bins per feature (at most 255)
	lambda    float64 // L2 penalty on leaf values
}

func defaultBoostOptions() boostOptions {
	return boostOptions{rounds: 300, shrinkage: 0.05, maxLeaves: 15, maxDepth: 6, minLeaf: 5, bins: 64, lambda: 1}
}

type treeNode struct {
	feature   int     // -1 for a leaf
	threshold float64 // x[feature] <= threshold goes left
	left      int
	right     int
	value     float64 // leaf output, shrinkage applied
}

type regressionTree []treeNode

func (t regressionTree) predict(x []float64) float64 {
	i := 0
	for t[i].feature >= 0 {
		if x[t[i].feature] <= t[i].threshold {
			i = t[i].left
		} else {
			i = t[i].right
		}
	}
	return t[i].value
}

// boostedTrees is a fitted ensemble.
type boostedTrees struct {
	base  float64
	trees []regressionTree
}

func (b *boostedTrees) predict(x []float64) float64 {
	v := b.base
	for _, t := range b.trees {
		v += t.predict(x)
	}
	return v
}

// binEdges are the upper edges of a feature's bins: midpoints between distinct values
// when there are few, quantile cuts otherwise. A value v falls in the first bin whose
// edge is ≥ v, or in the last bin (index len(edges)) above them all.
func binEdges(values []float64, bins int) []float64 {
	s := append([]float64(nil), values...)
	sort.Float64s(s)
	var distinct []float64
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			distinct = append(distinct, v)
		}
	}
	var edges []float64
	if len(distinct) <= bins {
		for i := 0; i+1 < len(distinct); i++ {
			edges = append(edges, (distinct[i]+distinct[i+1])/2)
		}
		return edges
	}
	for b := 1; b < bins; b++ {
		e := s[b*len(s)/bins]
		if len(edges) == 0 || e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	return edges
}

func binOf(edges []float64, v float64) int {
	return sort.SearchFloat64s(edges, v)
}

// fitBoosted fits y ≈ f(x). It is deterministic: no sampling of rows or features.
func fitBoosted(x [][]float64, y []float64, o boostOptions) *boostedTrees {
	n := len(x)
	if n == 0 {
		return &boostedTrees{}
	}
	d := len(x[0])
	bins := min(max(o.bins, 2), 255)
	edges := make([][]float64, d)
	binned := make([][]uint8, n)
	for i := range binned {
		binned[i] = make([]uint8, d)
	}
	col := make([]float64, n)
	for f := 0; f < d; f++ {
		for i := range x {
			col[i] = x[i][f]
		}
		edges[f] = binEdges(col, bins)
		for i := range x {
			binned[i][f] = uint8(binOf(edges[f], x[i][f]))
		}
	}
	base := 0.0
	for _, v := range y {
		base += v
	}
	base /= float64(n)
	pred := make([]float64, n)
	for i := range pred {
		pred[i] = base
	}
	out := &boostedTrees{base: base}
	resid := make([]float64, n)
	for range o.rounds {
		for i := range resid {
			resid[i] = y[i] - pred[i]
		}
		t := growTree(binned, edges, resid, o)
		for i := range pred {
			pred[i] += t.predict(x[i])
		}
		out.trees = append(out.trees, t)
	}
	return out
}

// leafSplit is the best split found for one leaf.
type leafSplit struct {
	node    int
	rows    []int
	depth   int
	gain    float64
	feature int
	bin     int
}

// growTree fits one tree to the residuals, leaf-wise.
func growTree(binned [][]uint8, edges [][]float64, resid []float64, o boostOptions) regressionTree {
	n := len(binned)
	rows := make([]int, n)
	for i := range rows {
		rows[i] = i
	}
	leafValue := func(rows []int) float64 {
		s := 0.0
		for _, r := range rows {
			s += resid[r]
		}
		return o.shrinkage * s / (float64(len(rows)) + o.lambda)
	}
	tree := regressionTree{{feature: -1, value: leafValue(rows)}}
	var open []leafSplit
	if s, ok := bestSplit(binned, edges, resid, rows, o); ok {
		s.node, s.rows, s.depth = 0, rows, 0
		open = append(open, s)
	}
	leaves := 1
	for leaves < o.maxLeaves && len(open) > 0 {
		// The open leaf with the largest gain splits (the first of equals).
		bi := 0
		for i := range open {
			if open[i].gain > open[bi].gain {
				bi = i
			}
		}
		s := open[bi]
		open = append(open[:bi], open[bi+1:]...)
		var left, right []int
		for _, r := range s.rows {
			if int(binned[r][s.feature]) <= s.bin {
				left = append(left, r)
			} else {
				right = append(right, r)
			}
		}
		li, ri := len(tree), len(tree)+1
		tree = append(tree, treeNode{feature: -1, value: leafValue(left)}, treeNode{feature: -1, value: leafValue(right)})
		tree[s.node] = treeNode{feature: s.feature, threshold: edges[s.feature][s.bin], left: li, right: ri}
		leaves++
		for _, child := range []struct {
			node int
			rows []int
		}{{li, left}, {ri, right}} {
			if s.depth+1 >= o.maxDepth {
				continue
			}
			if cs, ok := bestSplit(binned, edges, resid, child.rows, o); ok {
				cs.node, cs.rows, cs.depth = child.node, child.rows, s.depth+1
				open = append(open, cs)
			}
		}
	}
	return tree
}

// bestSplit finds the feature and bin whose split of rows most reduces the penalised
// squared error, from per-bin sums of the residuals.
func bestSplit(binned [][]uint8, edges [][]float64, resid []float64, rows []int, o boostOptions) (leafSplit, bool) {
	if len(rows) < 2*max(o.minLeaf, 1) {
		return leafSplit{}, false
	}
	total := 0.0
	for _, r := range rows {
		total += resid[r]
	}
	parent := total * total / (float64(len(rows)) + o.lambda)
	best := leafSplit{gain: 1e-12}
	found := false
	var sum [256]float64
	var cnt [256]int
	for f := range edges {
		nb := len(edges[f]) + 1
		if nb < 2 {
			continue
		}
		for b := 0; b < nb; b++ {
			sum[b], cnt[b] = 0, 0
		}
		for _, r := range rows {
			b := binned[r][f]
			sum[b] += resid[r]
			cnt[b]++
		}
		sl, nl := 0.0, 0
		for b := 0; b < nb-1; b++ {
			sl += sum[b]
			nl += cnt[b]
			nr := len(rows) - nl
			if nl < o.minLeaf || nr < o.minLeaf {
				continue
			}
			sr := total - sl
			gain := sl*sl/(float64(nl)+o.lambda) + sr*sr/(float64(nr)+o.lambda) - parent
			if gain > best.gain && !math.IsNaN(gain) {
				best = leafSplit{gain: gain, feature: f, bin: b}
				found = true
			}
		}
	}
	return best, found
}
