package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExpositionHasEveryMetric(t *testing.T) {
	m := New()
	m.SetTrials(7, map[string]int{"running": 2, "succeeded": 5})
	m.PointsIngested(12)
	m.PointsIngested(0) // ignored, not a panic
	m.ObserveDecision("mfbo", 30*time.Millisecond)
	m.ObserveGPFit(200 * time.Millisecond)
	m.ObserveAssignment(3 * time.Millisecond)
	m.SetBudget(7, 1.5e18, 1e19)
	m.StoreWriteFailed(time.Unix(1700000000, 0))
	m.StoreWriteFailed(time.Unix(1700000005, 0))

	body := scrape(t, m.Handler())
	for _, want := range []string{
		"# TYPE " + NameTrials + " gauge",
		NameTrials + `{state="running",study="7"} 2`,
		NameTrials + `{state="pending",study="7"} 0`,
		"# TYPE " + NamePointsIngested + " counter",
		NamePointsIngested + " 12",
		"# TYPE " + NameDecision + " histogram",
		NameDecision + `_count{policy="mfbo"} 1`,
		NameAssignment + `_bucket{le="0.004"} 1`,
		"# TYPE " + NameGPFit + " histogram",
		NameGPFit + "_count 1",
		NameBudgetSpent + `{study="7"} 1.5e+18`,
		NameBudgetTotal + `{study="7"} 1e+19`,
		"# TYPE " + NameStoreErrors + " counter",
		NameStoreErrors + " 2",
		NameStoreLastError + " 1.700000005e+09",
		"go_goroutines", // the runtime collector is registered too
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	if problems, err := testutil.GatherAndLint(m.Registry()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

func TestSetTrialsZeroesEmptiedStates(t *testing.T) {
	m := New()
	m.SetTrials(1, map[string]int{"running": 3})
	m.SetTrials(1, map[string]int{"succeeded": 3})
	if got := testutil.ToFloat64(m.trials.WithLabelValues("1", "running")); got != 0 {
		t.Errorf("running after it emptied = %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.trials.WithLabelValues("1", "succeeded")); got != 3 {
		t.Errorf("succeeded = %v, want 3", got)
	}
}

func TestForgetStudy(t *testing.T) {
	m := New()
	m.SetTrials(1, map[string]int{"running": 1})
	m.SetBudget(1, 1, 2)
	m.SetTrials(2, map[string]int{"running": 1})
	m.ForgetStudy(1)
	body := scrape(t, m.Handler())
	if strings.Contains(body, `study="1"`) {
		t.Errorf("study 1 series remain after ForgetStudy:\n%s", body)
	}
	if !strings.Contains(body, `study="2"`) {
		t.Errorf("study 2 series were dropped too")
	}
}

func TestNopIsARecorder(t *testing.T) {
	var r Recorder = Nop{}
	r.SetTrials(1, nil)
	r.PointsIngested(1)
	r.ObserveDecision("random", time.Second)
	r.ObserveGPFit(time.Second)
	r.SetBudget(1, 1, 1)
	r.ForgetStudy(1)
}
