package main

import (
	"context"
	"encoding/json"
	"fmt"
	"google.golang.org/protobuf/proto"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// studyGetCmd shows one study: its state and reason, progress, recommendation and spec.
func (c *cli) studyGetCmd() *cobra.Command {
	return c.idCmd("get STUDY_ID", "Show a study: state, progress, recommendation and its spec as stored", "STUDY_ID",
		func(ctx context.Context, client pb.ControlServiceClient, id uint64) error {
			resp, err := client.GetStudy(ctx, &pb.GetStudyRequest{StudyId: id})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return writeJSON(c.out, resp.Status)
			}
			return printStudy(c, resp.Status)
		})
}

func printStudy(c *cli, s *pb.StudyStatus) error {
	st, spec := s.Study, s.Study.Spec
	w := c.out
	fmt.Fprintf(w, "study %d (%s): %s", st.Id, spec.Name, studyState(st.State))
	if st.EndReason != "" {
		fmt.Fprintf(w, ": %s", st.EndReason)
	}
	fmt.Fprintln(w)
	n := s.TrialsByState
	fmt.Fprintf(w, "trials: %d created; %d pending, %d running, %d succeeded, %d failed, %d stopped, %d lost; %d failed in a row (limit %d)\n",
		st.TrialsCreated, n["pending"], n["running"], n["succeeded"], n["failed"], n["stopped"], n["lost"],
		st.ConsecutiveFailures, spec.MaxConsecutiveFailures)
	fmt.Fprintf(w, "budget: %s spent, %s committed to running trials; %.1f GPU-hours\n",
		formatBudget(st.SpentFlops, spec.BudgetFlops), formatFlops(s.CommittedFlops), st.SpentGpuHours)
	if r := s.Recommendation; r != nil {
		fmt.Fprintf(w, "best: %s = %s (%s)\n", spec.Objective.GetMetric(), formatValue(r), formatMixture(spec, r.Mixture))
		fmt.Fprintf(w, "      %s\n", r.Label)
	} else {
		fmt.Fprintln(w, "best: "+none)
	}
	pools, prior := poolAndPriorSummary(spec)
	if pools != "" {
		fmt.Fprintf(w, "candidate pools: %s\n", pools)
	}
	if prior != "" {
		fmt.Fprintf(w, "prior runs (free, observed from the first decision): %s\n", prior)
	}
	// The pools and prior runs are summarised above: hundreds of them would drown the spec.
	brief := proto.Clone(spec).(*pb.StudySpec)
	brief.PriorRuns = nil
	for _, sc := range brief.Scales {
		sc.Pool = nil
	}
	v, err := jsonValue(brief, nil) // integers as numbers, as in -o json
	if err != nil {
		return err
	}
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "spec:\n%s", indent(string(y), "  "))
	return nil
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

// studyUpdateCmd changes a running study's limits; only the flags given are sent.
func (c *cli) studyUpdateCmd() *cobra.Command {
	var budget float64
	var maxTrials, maxParallel, maxFailures int32
	cmd := &cobra.Command{
		Use:   "update STUDY_ID [--budget-flops F] [--max-trials N] [--max-parallel N] [--max-consecutive-failures N]",
		Short: "Change a running or paused study's budget, trial cap, parallelism or failure limit",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0], "STUDY_ID")
			if err != nil {
				return err
			}
			req := &pb.UpdateStudyRequest{StudyId: id}
			if cmd.Flags().Changed("budget-flops") {
				req.BudgetFlops = &budget
			}
			if cmd.Flags().Changed("max-trials") {
				req.MaxTrials = &maxTrials
			}
			if cmd.Flags().Changed("max-parallel") {
				req.MaxParallel = &maxParallel
			}
			if cmd.Flags().Changed("max-consecutive-failures") {
				req.MaxConsecutiveFailures = &maxFailures
			}
			if req.BudgetFlops == nil && req.MaxTrials == nil && req.MaxParallel == nil && req.MaxConsecutiveFailures == nil {
				return usageError{fmt.Errorf("give at least one of --budget-flops, --max-trials, --max-parallel, --max-consecutive-failures")}
			}
			return c.call(func(ctx context.Context, client pb.ControlServiceClient) error {
				resp, err := client.UpdateStudy(ctx, req)
				if err != nil {
					return err
				}
				if c.output == "json" {
					return writeJSON(c.out, resp.Study)
				}
				sp := resp.Study.Spec
				fmt.Fprintf(c.out, "study %d is %s: budget %s, max_trials %d, max_parallel %d, max_consecutive_failures %d\n", resp.Study.Id,
					studyState(resp.Study.State), formatBudget(resp.Study.SpentFlops, sp.BudgetFlops), sp.MaxTrials, sp.MaxParallel,
					sp.MaxConsecutiveFailures)
				return nil
			})
		},
	}
	cmd.Flags().Float64Var(&budget, "budget-flops", 0, "new total budget in FLOPs (at least what is spent)")
	cmd.Flags().Int32Var(&maxTrials, "max-trials", 0, "new trial cap (0: no limit; at least the trials created)")
	cmd.Flags().Int32Var(&maxParallel, "max-parallel", 0, "trials that may run at the same time")
	cmd.Flags().Int32Var(&maxFailures, "max-consecutive-failures", 0, "failed or lost trials in a row that end the study (0: the default)")
	return cmd
}

func (c *cli) studyDeleteCmd() *cobra.Command {
	return c.idCmd("delete STUDY_ID", "Delete an ended study with its trials and curves (cancel a running one first)", "STUDY_ID",
		func(ctx context.Context, client pb.ControlServiceClient, id uint64) error {
			resp, err := client.DeleteStudy(ctx, &pb.DeleteStudyRequest{StudyId: id})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return writeJSON(c.out, resp)
			}
			fmt.Fprintf(c.out, "study %d deleted with %d trials\n", id, resp.TrialsDeleted)
			return nil
		})
}

// trialAddCmd adds a trial by hand. The mixture is given as weights in the study's
// domain order ("0.2,0.3,0.5") or by domain name ("web=0.2,code=0.3,books=0.5").
func (c *cli) trialAddCmd() *cobra.Command {
	var mixture, scale string
	var steps int64
	cmd := &cobra.Command{
		Use:   "add STUDY_ID --mixture W1,W2,... --scale SCALE --steps N",
		Short: "Add a trial by hand; the scheduler runs it before the policy's next decision",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0], "STUDY_ID")
			if err != nil {
				return err
			}
			if mixture == "" || scale == "" || steps <= 0 {
				return usageError{fmt.Errorf("--mixture, --scale and --steps are required")}
			}
			return c.call(func(ctx context.Context, client pb.ControlServiceClient) error {
				st, err := client.GetStudy(ctx, &pb.GetStudyRequest{StudyId: id})
				if err != nil {
					return err
				}
				weights, err := parseMixture(mixture, st.Status.Study.Spec)
				if err != nil {
					return err
				}
				resp, err := client.AddTrial(ctx, &pb.AddTrialRequest{StudyId: id, Mixture: weights, Scale: scale, Steps: steps})
				if err != nil {
					return err
				}
				if c.output == "json" {
					return writeJSON(c.out, resp.Trial)
				}
				t := resp.Trial
				fmt.Fprintf(c.out, "trial %d added to study %d: %s, scale %s, %d steps (%s)\n", t.Id, id,
					formatMixture(st.Status.Study.Spec, t.Mixture), t.Scale, t.Steps, trialState(t.State))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&mixture, "mixture", "", "weights in domain order (0.2,0.8) or by name (web=0.2,code=0.8)")
	cmd.Flags().StringVar(&scale, "scale", "", "one of the study's scales")
	cmd.Flags().Int64Var(&steps, "steps", 0, "one of the study's step budgets")
	return cmd
}

// parseMixture reads "0.2,0.8" (domain order) or "web=0.2,code=0.8" (every domain named
// once); the coordinator checks bounds and the sum.
func parseMixture(s string, spec *pb.StudySpec) ([]float64, error) {
	parts := strings.Split(s, ",")
	if len(parts) > 1024 {
		return nil, usageError{fmt.Errorf("--mixture: %d weights", len(parts))}
	}
	named := strings.Contains(s, "=")
	out := make([]float64, len(parts))
	if named {
		out = make([]float64, len(spec.Domains))
	}
	seen := map[int]bool{}
	for i, p := range parts {
		value, pos := p, i
		if named {
			name, v, ok := strings.Cut(p, "=")
			if !ok {
				return nil, usageError{fmt.Errorf("--mixture: %q: give every weight as DOMAIN=WEIGHT, or none", p)}
			}
			pos = -1
			for j, d := range spec.Domains {
				if d.Name == strings.TrimSpace(name) {
					pos = j
				}
			}
			if pos < 0 {
				return nil, usageError{fmt.Errorf("--mixture: %q is not a domain of the study (%s)", name, strings.Join(domainNames(spec), ", "))}
			}
			if seen[pos] {
				return nil, usageError{fmt.Errorf("--mixture: %s given twice", name)}
			}
			seen[pos] = true
			value = v
		}
		w, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, usageError{fmt.Errorf("--mixture: %q is not a number", value)}
		}
		out[pos] = w
	}
	if named && len(seen) != len(spec.Domains) {
		return nil, usageError{fmt.Errorf("--mixture: %d of the study's %d domains named (%s); name them all",
			len(seen), len(spec.Domains), strings.Join(domainNames(spec), ", "))}
	}
	return out, nil
}

func (c *cli) workerForgetCmd() *cobra.Command {
	return c.idCmd("forget WORKER_ID", "Remove a lost worker that holds no trials from the registry", "WORKER_ID",
		func(ctx context.Context, client pb.ControlServiceClient, id uint64) error {
			resp, err := client.ForgetWorker(ctx, &pb.ForgetWorkerRequest{WorkerId: id})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return writeJSON(c.out, resp)
			}
			fmt.Fprintf(c.out, "worker %d forgotten\n", id)
			return nil
		})
}
