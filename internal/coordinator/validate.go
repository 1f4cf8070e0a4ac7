package coordinator

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mixopt/mixopt/internal/scheduler"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Request checks at the wire: every string and list a request carries is bounded
// (internal/scheduler/limits.go) and every number is one the scheduler can store, before
// anything reaches it. Each handler calls its check in one line; a refusal is
// InvalidArgument with the field first in the message, so nothing of the request is
// stored.

func badField(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func checkLen(field, s string, max int) error {
	if len(s) > max {
		return badField(field, "%d bytes, at most %d", len(s), max)
	}
	return nil
}

func checkHeldLeases(field string, leases []*pb.HeldLease) error {
	if len(leases) > scheduler.MaxHeldLeases {
		return badField(field, "%d leases, at most %d", len(leases), scheduler.MaxHeldLeases)
	}
	for i, l := range leases {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case l.TrialId == 0:
			return badField(f+".trial_id", "missing")
		case len(l.LeaseId) > scheduler.MaxLeaseIDBytes:
			return badField(f+".lease_id", "%d bytes, at most %d", len(l.LeaseId), scheduler.MaxLeaseIDBytes)
		}
	}
	return nil
}

func validateRegister(req *pb.RegisterRequest) error {
	if req.Hostname == "" {
		return missing("hostname")
	}
	if err := checkLen("hostname", req.Hostname, scheduler.MaxHostnameBytes); err != nil {
		return err
	}
	if len(req.Gpus) > scheduler.MaxGPUsPerWorker {
		return badField("gpus", "%d GPUs, at most %d", len(req.Gpus), scheduler.MaxGPUsPerWorker)
	}
	for i, g := range req.Gpus {
		f := fmt.Sprintf("gpus[%d]", i)
		switch {
		case g == nil:
			return missing(f)
		case len(g.Name) > scheduler.MaxGPUNameBytes:
			return badField(f+".name", "%d bytes, at most %d", len(g.Name), scheduler.MaxGPUNameBytes)
		case g.Index < 0 || g.Index >= scheduler.MaxGPUsPerWorker:
			return badField(f+".index", "%d out of range (0 to %d)", g.Index, scheduler.MaxGPUsPerWorker-1)
		case g.MemoryMib < 0 || g.MemoryMib > scheduler.MaxGPUMemoryMiB:
			return badField(f+".memory_mib", "%d out of range (0 to %d)", g.MemoryMib, scheduler.MaxGPUMemoryMiB)
		}
	}
	if c := req.SimulatedCapacity; c < 0 || c > scheduler.MaxSimulatedCapacity {
		return badField("simulated_capacity", "%d out of range (0 to %d)", c, scheduler.MaxSimulatedCapacity)
	}
	if err := checkHeldLeases("leases", req.Leases); err != nil {
		return err
	}
	if err := scheduler.CheckIdentity(req.Identity); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

func validateHeartbeat(req *pb.HeartbeatRequest) error {
	return checkHeldLeases("leases", req.Leases)
}

// checkLease bounds the lease id that reports carry (held() checks the rest).
func checkLease(leaseID string) error {
	return checkLen("lease_id", leaseID, scheduler.MaxLeaseIDBytes)
}

// validateReportPoints refuses a batch whose points could not be true of a training run:
// non-finite losses or metrics, negative tokens, absurd wall times, malformed metric
// names, or steps and wall times going backwards. A diverged run reports FailTrial with
// FAILURE_CLASS_DIVERGED instead of a NaN point. The scheduler checks the batch against what
// the attempt already committed.
func validateReportPoints(req *pb.ReportPointsRequest) error {
	if err := checkLease(req.LeaseId); err != nil {
		return err
	}
	if len(req.Points) == 0 {
		return badField("points", "empty batch")
	}
	if len(req.Points) > scheduler.MaxPointsPerReport {
		return badField("points", "%d in one batch, at most %d", len(req.Points), scheduler.MaxPointsPerReport)
	}
	for i, p := range req.Points {
		// The field name is built only for an error: this runs for every point ingested.
		f := func(sub string) string { return "points[" + strconv.Itoa(i) + "]" + sub }
		if p == nil {
			return missing(f(""))
		}
		switch {
		case p.Step < 0:
			return badField(f(".step"), "%d is negative", p.Step)
		case p.Tokens < 0:
			return badField(f(".tokens"), "%d is negative", p.Tokens)
		case !finite(p.TrainLoss):
			return badField(f(".train_loss"), "%v is not finite (a diverged run fails with class diverged)", p.TrainLoss)
		case !finite(p.WallTimeS) || p.WallTimeS < 0 || p.WallTimeS > scheduler.MaxWallTimeS:
			return badField(f(".wall_time_s"), "%v out of range (0 to %d seconds)", p.WallTimeS, scheduler.MaxWallTimeS)
		case len(p.Eval) > scheduler.MaxEvalMetrics:
			return badField(f(".eval"), "%d metrics, at most %d", len(p.Eval), scheduler.MaxEvalMetrics)
		}
		if i > 0 {
			prev := req.Points[i-1]
			if p.Step < prev.Step {
				return badField(f(".step"), "%d goes back from %d", p.Step, prev.Step)
			}
			if p.WallTimeS < prev.WallTimeS {
				return badField(f(".wall_time_s"), "%v goes back from %v", p.WallTimeS, prev.WallTimeS)
			}
		}
		for k, v := range p.Eval {
			if problem := scheduler.MetricNameProblem(k); problem != "" {
				return badField(f(".eval"), "%s", problem)
			}
			if !finite(v) {
				return badField(fmt.Sprintf("%s[%q]", f(".eval"), k), "%v is not finite", v)
			}
		}
	}
	return nil
}

func validateFinish(req *pb.FinishTrialRequest) error {
	if err := checkLease(req.LeaseId); err != nil {
		return err
	}
	if err := checkLen("source_run", req.SourceRun, scheduler.MaxSourceRunBytes); err != nil {
		return err
	}
	if !finite(req.SourceDistance) || req.SourceDistance < 0 {
		return badField("source_distance", "%v is not a finite distance >= 0", req.SourceDistance)
	}
	return nil
}

func validateFail(req *pb.FailTrialRequest) error {
	if err := checkLease(req.LeaseId); err != nil {
		return err
	}
	// The failure class is checked where it is read (failureClassOf, in FailTrial).
	return checkLen("reason", req.Reason, scheduler.MaxReasonBytes)
}

// failureClassOf is the failure class a FailTrial reports: failure_class, or for an older
// worker that sends only the deprecated error_class string, that string's class (its
// short name, as scheduler.FailureClassName spells it; "" is other). This is the one place
// the deprecated string is read.
func failureClassOf(req *pb.FailTrialRequest) (pb.FailureClass, error) {
	if req.FailureClass != pb.FailureClass_FAILURE_CLASS_UNSPECIFIED {
		if _, ok := pb.FailureClass_name[int32(req.FailureClass)]; !ok {
			return 0, badField("failure_class", "unknown failure class %d", int32(req.FailureClass))
		}
		return req.FailureClass, nil
	}
	//lint:ignore SA1019 read only as the fallback for workers that predate failure_class
	legacy := req.ErrorClass
	if legacy == "" {
		return pb.FailureClass_FAILURE_CLASS_OTHER, nil
	}
	var known []string
	for v := range int32(len(pb.FailureClass_name)) { // the enum's values are 0..n-1, in order
		c := pb.FailureClass(v)
		if c == pb.FailureClass_FAILURE_CLASS_UNSPECIFIED {
			continue
		}
		if scheduler.FailureClassName(c) == legacy {
			return c, nil
		}
		known = append(known, scheduler.FailureClassName(c))
	}
	return 0, badField("error_class", "unknown class %.40q (known: %s)", legacy, strings.Join(known, ", "))
}

func validateListTrials(req *pb.ListTrialsRequest) error {
	if _, ok := pb.TrialState_name[int32(req.State)]; !ok {
		return badField("state", "unknown trial state %d", int32(req.State))
	}
	return checkLen("scale", req.Scale, scheduler.MaxNameBytes)
}

// pageTokenPrefix marks the coordinator's page tokens; after it comes the last id of the
// page before. Clients pass tokens back as they got them.
const pageTokenPrefix = "after:"

// pageOf turns a request's page_size and page_token into the scheduler's page.
func pageOf(size int32, token string) (scheduler.Page, error) {
	p := scheduler.Page{Size: int(size)}
	switch {
	case size == 0:
		p.Size = scheduler.DefaultPageSize
	case size < 0 || size > scheduler.MaxPageSize:
		return p, badField("page_size", "%d out of range (1 to %d; 0: %d)", size, scheduler.MaxPageSize, scheduler.DefaultPageSize)
	}
	if token == "" {
		return p, nil
	}
	if err := checkLen("page_token", token, scheduler.MaxPageTokenBytes); err != nil {
		return p, err
	}
	after, err := strconv.ParseUint(strings.TrimPrefix(token, pageTokenPrefix), 10, 64)
	if !strings.HasPrefix(token, pageTokenPrefix) || err != nil || after == 0 {
		return p, badField("page_token", "%q is not a token this coordinator returned", token)
	}
	p.After = after
	return p, nil
}

// trimPage ends a page before it passes MaxPageBytes (always keeping its first record,
// bounded by the limits) and returns the token of the page after it, "" when none follows.
func trimPage[M proto.Message](items []M, more bool, id func(M) uint64) ([]M, string) {
	total := 0
	for i, m := range items {
		total += proto.Size(m)
		if i > 0 && total > scheduler.MaxPageBytes {
			items, more = items[:i], true
			break
		}
	}
	if !more || len(items) == 0 {
		return items, ""
	}
	return items, pageTokenPrefix + strconv.FormatUint(id(items[len(items)-1]), 10)
}
