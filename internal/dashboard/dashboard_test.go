package dashboard

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func getJSON(t *testing.T, srv *httptest.Server, path string, v any) {
	t.Helper()
	resp, b := get(t, srv, path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", path, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func TestStudiesAPI(t *testing.T) {
	srv := httptest.NewServer(Handler(newFakeSource()))
	defer srv.Close()
	var studies []studyJSON
	getJSON(t, srv, "/api/studies", &studies)
	if len(studies) != 2 || studies[0].Name != "slimpajama-5dom" || studies[1].State != "completed" {
		t.Fatalf("studies = %+v", studies)
	}
	s := studies[0]
	if s.Recommendation == nil || s.Recommendation.Value != simRec.Value || len(s.Recommendation.Mixture) != 5 {
		t.Errorf("recommendation = %+v", s.Recommendation)
	}
	if s.TargetScale != "s150m" || s.Metric != "mean_ce" || len(s.Scales) != 3 || s.TrialsByState["running"] != 3 {
		t.Errorf("study = %+v", s)
	}
	if studies[1].Recommendation != nil {
		t.Errorf("study without a recommendation got one: %+v", studies[1].Recommendation)
	}
}

func TestStudyDetailAPI(t *testing.T) {
	src := newFakeSource()
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()
	var d studyDetailJSON
	getJSON(t, srv, "/api/studies/1", &d)
	if len(d.Trials) != simTrials {
		t.Fatalf("%d trials, want %d", len(d.Trials), simTrials)
	}
	if len(d.Curves) != simWithPts {
		t.Errorf("%d curves, want %d (every trial with points)", len(d.Curves), simWithPts)
	}
	for _, c := range d.Curves {
		for i := 1; i < len(c.Points); i++ {
			if c.Points[i][0] <= c.Points[i-1][0] {
				t.Fatalf("trial %d: steps not increasing", c.TrialID)
			}
		}
	}
	pending := d.Trials[simTrials-1]
	if pending.State != "pending" || pending.Value != nil {
		t.Errorf("pending trial = %+v", pending)
	}
	// Progress: compute never falls, and the best value per scale never gets worse.
	ended := 0
	for _, ts := range src.trials[1] {
		if ts.EndTimeUnixMs > 0 && ts.State != pb.TrialState_TRIAL_STATE_FAILED {
			ended++
		}
	}
	if len(d.Progress) != ended {
		t.Errorf("%d progress points, want %d (ended trials with a value)", len(d.Progress), ended)
	}
	best := map[string]float64{}
	prev := 0.0
	for _, p := range d.Progress {
		if p.ComputeFlops < prev {
			t.Errorf("compute fell at trial %d", p.TrialID)
		}
		prev = p.ComputeFlops
		if b, ok := best[p.Scale]; ok && p.Best > b {
			t.Errorf("best at %s rose from %v to %v", p.Scale, b, p.Best)
		}
		best[p.Scale] = p.Best
	}
	// The failed trial's compute is counted in the total (it was spent).
	var total float64
	for _, tr := range d.Trials {
		if tr.EndTimeMs > 0 {
			total += tr.ComputeFlops
		}
	}
	if last := d.Progress[len(d.Progress)-1].ComputeFlops; math.Abs(last-total) > 1e-6*total {
		t.Errorf("final compute %g, want %g (all ended trials, failed included)", last, total)
	}
	// Spend by scale adds up every trial's compute so far, in the spec's scale order.
	var all, spent float64
	for _, tr := range d.Trials {
		all += tr.ComputeFlops
	}
	for i, sp := range d.Spend {
		if sp.Scale != d.Study.Scales[i].Name {
			t.Errorf("spend[%d] is %s, want the spec's order", i, sp.Scale)
		}
		spent += sp.Flops
	}
	if len(d.Spend) != len(d.Study.Scales) || math.Abs(spent-all) > 1e-6*all || all == 0 {
		t.Errorf("spend by scale %+v sums to %g, want %g", d.Spend, spent, all)
	}
}

func TestNonFiniteValuesStayValidJSON(t *testing.T) {
	src := newFakeSource()
	src.trials[1][0].LastValue = math.NaN()
	src.points[1][0].Eval["mean_ce"] = math.Inf(1)
	src.studies[0].Recommendation = &pb.Recommendation{Value: 2, Lower: math.NaN(), Upper: math.Inf(1), Mixture: []float64{math.NaN()}}
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()
	var d studyDetailJSON
	getJSON(t, srv, "/api/studies/1", &d)
	if d.Trials[0].Value != nil {
		t.Errorf("NaN value shown: %v", *d.Trials[0].Value)
	}
}

func TestRoutes(t *testing.T) {
	srv := httptest.NewServer(Handler(newFakeSource()))
	defer srv.Close()
	for _, tc := range []struct {
		path string
		code int
		ct   string
	}{
		{"/", 200, "text/html; charset=utf-8"},
		{"/app.js", 200, "text/javascript; charset=utf-8"},
		{"/style.css", 200, "text/css; charset=utf-8"},
		{"/api/workers", 200, "application/json"},
		{"/api/studies/99", 404, ""},
		{"/api/studies/x", 400, ""},
		{"/api/studies/0", 400, ""},
		{"/nope.txt", 404, ""},
	} {
		resp, _ := get(t, srv, tc.path)
		if resp.StatusCode != tc.code {
			t.Errorf("GET %s: %d, want %d", tc.path, resp.StatusCode, tc.code)
		}
		if tc.ct != "" && resp.Header.Get("Content-Type") != tc.ct {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, resp.Header.Get("Content-Type"), tc.ct)
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: no CSP", tc.path)
		}
	}
	resp, err := http.Post(srv.URL+"/api/studies", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405 (read-only)", resp.StatusCode)
	}
}

func TestUnderPrefix(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", Handler(newFakeSource())))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var studies []studyJSON
	getJSON(t, srv, "/dashboard/api/studies", &studies)
	if resp, _ := get(t, srv, "/dashboard/"); resp.StatusCode != 200 {
		t.Errorf("page under a prefix: %d", resp.StatusCode)
	}
}

func TestThin(t *testing.T) {
	var pts [][2]float64
	for i := range 1000 {
		pts = append(pts, [2]float64{float64(i), 0})
	}
	got := thin(pts, 200)
	if len(got) != 200 || got[0][0] != 0 || got[199][0] != 999 {
		t.Fatalf("thin: len %d first %v last %v", len(got), got[0], got[len(got)-1])
	}
	if len(thin(pts[:5], 200)) != 5 {
		t.Error("short curve changed")
	}
}
