// Package metrics is mixopt's Prometheus instrumentation behind a small interface, so that
// the scheduler records what happens without importing Prometheus.
//
// The scheduler holds a Recorder (Nop by default) and calls it at the points below; the
// coordinator builds a *Prometheus with New and serves Handler on its HTTP listener at
// /metrics:
//
//	m := metrics.New()                                  // own registry, plus Go and process collectors
//	mux.Handle("/metrics", m.Handler())
//	sched, _ := scheduler.New(db, scheduler.Config{Metrics: m, ...})
//
// Exposed series (all prefixed mixopt_):
//
//	trials{study,state}                  gauge      trials of a study by state (SetTrials)
//	points_ingested_total                counter    curve points newly committed (PointsIngested)
//	decision_duration_seconds{policy}    histogram  time the policy took to pick a trial (ObserveDecision)
//	gp_fit_duration_seconds              histogram  time one GP hyperparameter fit took (ObserveGPFit)
//	budget_spent_flops{study}            gauge      FLOPs a study has spent (SetBudget)
//	budget_total_flops{study}            gauge      a study's budget in FLOPs (SetBudget)
//	store_write_errors_total             counter    store commits that failed (StoreWriteFailed)
//	store_last_write_error_timestamp_seconds
//	                                     gauge      when the last one failed (StoreWriteFailed)
//
// Recorder methods must be cheap and never block: the scheduler may call them while holding
// its locks.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Recorder receives the scheduler's measurements. Implementations are safe for concurrent
// use.
type Recorder interface {
	// SetTrials sets how many of a study's trials are in each state; states missing from
	// byState are set to zero so a state that empties does not keep its old count. Keys are
	// the short state names ("running"), as in StudyStatus.trials_by_state.
	SetTrials(studyID uint64, byState map[string]int)
	// PointsIngested counts n curve points committed for the first time (re-sent points
	// that were only acknowledged are not counted).
	PointsIngested(n int)
	// ObserveDecision records how long the policy took to decide the next trial.
	ObserveDecision(policy string, d time.Duration)
	// ObserveAssignment records how long a worker's request for a trial took to be
	// served with one, queueing behind other decisions included.
	ObserveAssignment(d time.Duration)
	// ObserveGPFit records how long one Gaussian-process fit took.
	ObserveGPFit(d time.Duration)
	// SetBudget records a study's spent FLOPs and its total budget.
	SetBudget(studyID uint64, spentFLOPs, budgetFLOPs float64)
	// ForgetStudy drops a study's per-study series (after it is deleted, or to bound
	// cardinality); finished studies may keep theirs.
	ForgetStudy(studyID uint64)
}

// TrialStates are the state names SetTrials keeps a series for, so a dashboard sees zeros
// rather than missing series.
var TrialStates = []string{"pending", "running", "succeeded", "failed", "stopped", "lost"}

// Nop is a Recorder that records nothing; the scheduler's default.
type Nop struct{}

var _ Recorder = Nop{}

func (Nop) SetTrials(uint64, map[string]int)      {}
func (Nop) PointsIngested(int)                    {}
func (Nop) ObserveDecision(string, time.Duration) {}
func (Nop) ObserveGPFit(time.Duration)            {}
func (Nop) ObserveAssignment(time.Duration)       {}
func (Nop) SetBudget(uint64, float64, float64)    {}
func (Nop) ForgetStudy(uint64)                    {}

// Prometheus is a Recorder backed by its own Prometheus registry (not the global default
// one, so tests and several coordinators in one process do not collide).
type Prometheus struct {
	reg         *prometheus.Registry
	trials      *prometheus.GaugeVec
	points      prometheus.Counter
	decision    *prometheus.HistogramVec
	assignment  prometheus.Histogram
	gpFit       prometheus.Histogram
	budgetSpent *prometheus.GaugeVec
	budgetTotal *prometheus.GaugeVec
	storeErrors prometheus.Counter
	storeLastAt prometheus.Gauge
}

var _ Recorder = (*Prometheus)(nil)

// Metric names, exported for tests and dashboards.
const (
	NameTrials         = "mixopt_trials"
	NamePointsIngested = "mixopt_points_ingested_total"
	NameDecision       = "mixopt_decision_duration_seconds"
	NameAssignment     = "mixopt_assignment_duration_seconds"
	NameGPFit          = "mixopt_gp_fit_duration_seconds"
	NameBudgetSpent    = "mixopt_budget_spent_flops"
	NameBudgetTotal    = "mixopt_budget_total_flops"
	NameStoreErrors    = "mixopt_store_write_errors_total"
	NameStoreLastError = "mixopt_store_last_write_error_timestamp_seconds"
)

// New builds the registry with mixopt's metrics and the standard Go runtime and process
// collectors.
func New() *Prometheus {
	p := &Prometheus{
		reg: prometheus.NewRegistry(),
		trials: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: NameTrials, Help: "Trials of a study by state.",
		}, []string{"study", "state"}),
		points: prometheus.NewCounter(prometheus.CounterOpts{
			Name: NamePointsIngested, Help: "Curve points committed (re-sent duplicates excluded).",
		}),
		// Decisions range from a random draw (microseconds) to a GP refit with candidate
		// search (seconds); buckets span 1ms to ~65s.
		decision: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: NameDecision, Help: "Time the policy took to decide the next trial.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"policy"}),
		// Fine buckets (1ms doubling to ~65s): the load benchmark reads its quantiles.
		assignment: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: NameAssignment, Help: "Time from a worker's request for a trial to the trial leased, queueing included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17),
		}),
		gpFit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: NameGPFit, Help: "Time one Gaussian-process hyperparameter fit took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
		budgetSpent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: NameBudgetSpent, Help: "FLOPs a study has spent (steps run x FLOPs per step).",
		}, []string{"study"}),
		budgetTotal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: NameBudgetTotal, Help: "A study's total budget in FLOPs.",
		}, []string{"study"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: NameStoreErrors, Help: "Store write transactions whose commit failed (disk full, I/O error); clients were told to retry.",
		}),
		storeLastAt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: NameStoreLastError, Help: "Unix time of the last failed store commit (0: none since start).",
		}),
	}
	p.reg.MustRegister(p.trials, p.points, p.decision, p.assignment, p.gpFit, p.budgetSpent, p.budgetTotal,
		p.storeErrors, p.storeLastAt,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return p
}

// Registry is the underlying registry, for callers that add their own collectors (for
// example gRPC server metrics).
func (p *Prometheus) Registry() *prometheus.Registry { return p.reg }

// Handler serves the registry in the Prometheus exposition format; mount it at /metrics.
func (p *Prometheus) Handler() http.Handler {
	return promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{Registry: p.reg})
}

func studyLabel(id uint64) string { return strconv.FormatUint(id, 10) }

func (p *Prometheus) SetTrials(studyID uint64, byState map[string]int) {
	sid := studyLabel(studyID)
	for _, st := range TrialStates {
		p.trials.WithLabelValues(sid, st).Set(float64(byState[st]))
	}
	// A state outside TrialStates (added to the proto later) still gets its series.
	for st, n := range byState {
		p.trials.WithLabelValues(sid, st).Set(float64(n))
	}
}

func (p *Prometheus) PointsIngested(n int) {
	if n > 0 {
		p.points.Add(float64(n))
	}
}

func (p *Prometheus) ObserveDecision(policy string, d time.Duration) {
	p.decision.WithLabelValues(policy).Observe(d.Seconds())
}

func (p *Prometheus) ObserveGPFit(d time.Duration) { p.gpFit.Observe(d.Seconds()) }

func (p *Prometheus) ObserveAssignment(d time.Duration) { p.assignment.Observe(d.Seconds()) }

func (p *Prometheus) SetBudget(studyID uint64, spent, budget float64) {
	sid := studyLabel(studyID)
	p.budgetSpent.WithLabelValues(sid).Set(spent)
	p.budgetTotal.WithLabelValues(sid).Set(budget)
}

// StoreWriteFailed counts a failed store commit that happened at at. The store calls it
// (through its OnWriteError option), not the scheduler, so it is not in Recorder.
func (p *Prometheus) StoreWriteFailed(at time.Time) {
	p.storeErrors.Inc()
	p.storeLastAt.Set(float64(at.UnixNano()) / 1e9)
}

func (p *Prometheus) ForgetStudy(studyID uint64) {
	sid := studyLabel(studyID)
	p.trials.DeletePartialMatch(prometheus.Labels{"study": sid})
	p.budgetSpent.DeleteLabelValues(sid)
	p.budgetTotal.DeleteLabelValues(sid)
}
