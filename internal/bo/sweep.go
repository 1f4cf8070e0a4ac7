package bo

// sweepPick is the mixture a large proxy sweep ranks first among those not yet run at the
// target. The GP keeps at most MaxPoints points, so a sweep of more full runs at one
// cheaper scale (RegMix's 512–768 runs at 1M) reaches it only as a subset, which ranked
// the 64 RegMix 1B mixtures poorly; a boosted-tree regression uses every run, so target
// runs go to its picks in turn (RegMix's recipe) while the GP decides when to buy them
// and what to recommend. ok is false when no cheaper scale has such a sweep or every
// ranked mixture has run at the target.
func (m *MF) sweepPick(req *Request) (w []float64, ok bool) {
	p := &req.Problem
	if !m.cfg.MultiScale || m.cfg.MaxPoints <= 0 {
		return nil, false
	}
	var x [][]float64
	var y []float64
	for sc := range p.Scales {
		if sc == p.TargetScale {
			continue
		}
		if sx, sy := proxyData(req, sc); len(sx) > len(x) {
			x, y = sx, sy
		}
	}
	if len(x) <= m.cfg.MaxPoints {
		return nil, false
	}
	r := NewRegMix()
	ranked, _ := r.rank(req, x, y)
	for _, w := range ranked {
		if !r.ranAtTarget(req, w) {
			return append([]float64(nil), w...), true
		}
	}
	return nil, false
}
