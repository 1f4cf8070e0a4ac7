package scheduler

// Limits on everything that crosses the wire, in one place: the study spec (checked in
// NormalizeSpec) and the requests of the worker and control services (checked by the gRPC
// adapters in internal/coordinator/validate.go before they reach the scheduler). They keep
// every stored record, and so every listing page, far below a gRPC message. The proto
// comments (proto/mixopt/v1/*.proto) and docs/study-spec.md quote them; change them
// together.
const (
	// MaxSpecNameRunes bounds a study's name, in characters (runes), not bytes.
	MaxSpecNameRunes = 200
	// maxDomains and maxScales bound a study's decision space.
	maxDomains     = 64
	maxScales      = 64
	maxStepBudgets = 1024
	maxSteps       = 1_000_000_000
	maxParallel    = 100_000
	// maxPolicyBytes bounds a policy name (known names are far shorter).
	maxPolicyBytes = 128
	// MaxNameBytes bounds a domain or scale name (namePattern in spec.go spells it out).
	MaxNameBytes = 64
	// MaxExtraMetrics bounds a spec's extra_metrics.
	MaxExtraMetrics = 64
	// MaxMetricNameBytes bounds a metric name: in extra_metrics, the objective and every
	// eval key of a curve point.
	MaxMetricNameBytes = 128
	// MaxSelectorKinds bounds a worker selector's kinds.
	MaxSelectorKinds = 8
	// MaxLabels bounds the labels of a worker identity or a worker selector;
	// MaxLabelKeyBytes and MaxLabelValueBytes bound each.
	MaxLabels          = 64
	MaxLabelKeyBytes   = 63
	MaxLabelValueBytes = 256

	// MaxGPUsPerWorker is the most GPUs a worker may register, so a scale needing more
	// (gpus) could never be placed and is refused when the study is created.
	MaxGPUsPerWorker = 1024
	// MaxGPUMemoryMiB bounds a GPU's memory and a scale's min_gpu_memory_mib (16 TiB).
	MaxGPUMemoryMiB = 16 << 20
	// MaxHostnameBytes bounds a worker's hostname (a DNS name is at most 253).
	MaxHostnameBytes = 255
	// MaxGPUNameBytes bounds a GPU's description.
	MaxGPUNameBytes = 256
	// MaxSimulatedCapacity bounds the trials a simulated worker runs at once.
	MaxSimulatedCapacity = 10_000
	// MaxHeldLeases bounds the leases in one Register or Heartbeat.
	MaxHeldLeases = 100_000
	// MaxLeaseIDBytes bounds a lease id (the scheduler makes 24 hex digits).
	MaxLeaseIDBytes = 64
	// MaxSimSourceBytes bounds a simulated worker's source name; MaxPathBytes an
	// interpreter's path and MaxVersionBytes each of its version strings.
	MaxSimSourceBytes = 1024
	MaxPathBytes      = 4096
	MaxVersionBytes   = 128

	// MaxPointsPerReport bounds the points of one ReportPoints; MaxEvalMetrics the eval
	// entries of one point.
	MaxPointsPerReport = 10_000
	MaxEvalMetrics     = 256
	// MaxWallTimeS bounds a point's wall_time_s (seconds since its attempt started): a
	// year, far beyond any attempt, so that GPU-hours stay meaningful.
	MaxWallTimeS = 366 * 24 * 3600
	// MaxReasonBytes bounds a failure reason and MaxSourceRunBytes a finish's source_run.
	MaxReasonBytes    = 16 << 10
	MaxSourceRunBytes = 1024

	// DefaultPageSize is a listing page's length when the request gives none and
	// MaxPageSize the most one request may ask for; MaxPageBytes ends a page early so that
	// it stays under the client's default 4 MiB receive limit whatever its records hold.
	DefaultPageSize = 100
	MaxPageSize     = 1000
	MaxPageBytes    = 2 << 20
	// MaxPageTokenBytes bounds a page token.
	MaxPageTokenBytes = 64

	// MaxPoolMixtures bounds a scale's candidate pool, MaxPriorRuns a spec's prior runs
	// and MaxPriorPoints the curve of one (RegMix's sweep: 768 runs of one point).
	MaxPoolMixtures = 10_000
	MaxPriorRuns    = 10_000
	MaxPriorPoints  = 1_000
)
