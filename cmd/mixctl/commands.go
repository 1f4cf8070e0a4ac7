package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/mixopt/mixopt/internal/scheduler"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func (c *cli) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Studies (trials by state, budget, best mixture so far) and live workers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(func(ctx context.Context, client pb.ControlServiceClient) error {
				studies, err := listAllStudies(ctx, client)
				if err != nil {
					return err
				}
				workers, err := listAllWorkers(ctx, client)
				if err != nil {
					return err
				}
				if c.output == "json" {
					return writeStatusJSON(c.out, studies, workers)
				}
				health, err := storeHealthLine(ctx, client, time.Now())
				if err != nil {
					return err
				}
				printStudies(c.out, studies)
				fmt.Fprintln(c.out)
				printWorkers(c.out, workers, time.Now())
				if health != "" {
					fmt.Fprintln(c.out, "\n"+health)
				}
				return nil
			})
		},
	}
}

func (c *cli) studyCmd() *cobra.Command {
	study := &cobra.Command{Use: "study", Short: "Create and steer studies"}
	var file string
	var poolFiles, priorFiles []string
	create := &cobra.Command{
		Use:   "create -f SPEC [--pool RECORDING]... [--prior RECORDING]...",
		Short: "Create a study from a YAML or JSON spec (docs/study-spec.md)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{fmt.Errorf("-f: a spec file is required")}
			}
			spec, err := readSpec(file)
			if err != nil {
				return err
			}
			notes, err := addRecordings(spec, poolFiles, priorFiles)
			if err != nil {
				return err
			}
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "mixctl:", n)
			}
			return c.call(func(ctx context.Context, client pb.ControlServiceClient) error {
				resp, err := client.CreateStudy(ctx, &pb.CreateStudyRequest{Spec: spec})
				if err != nil {
					return err
				}
				if c.output == "json" {
					return writeJSON(c.out, resp.Study)
				}
				fmt.Fprintf(c.out, "study %d created (%s, policy %s)\n", resp.Study.Id, resp.Study.Spec.Name, resp.Study.Spec.Policy)
				return nil
			})
		},
	}
	create.Flags().StringVarP(&file, "file", "f", "", "spec file (YAML or JSON); - for standard input")
	create.Flags().StringArrayVar(&poolFiles, "pool", nil, "recording whose mixtures at each of the study's scales are that scale's candidate pool (repeatable)")
	create.Flags().StringArrayVar(&priorFiles, "prior", nil, "recording whose runs the study starts from as prior runs, free of its budget (repeatable)")
	study.AddCommand(create, c.waitCmd(), c.studyGetCmd(), c.studyUpdateCmd(), c.studyDeleteCmd())
	for _, verb := range []string{"pause", "resume", "cancel"} {
		study.AddCommand(c.studyVerbCmd(verb))
	}
	return study
}

func (c *cli) studyVerbCmd(verb string) *cobra.Command {
	return c.idCmd(verb+" STUDY_ID", strings.ToUpper(verb[:1])+verb[1:]+" a study", "STUDY_ID",
		func(ctx context.Context, client pb.ControlServiceClient, id uint64) error {
			var st *pb.Study
			var err error
			switch verb {
			case "pause":
				r, e := client.PauseStudy(ctx, &pb.PauseStudyRequest{StudyId: id})
				st, err = r.GetStudy(), e
			case "resume":
				r, e := client.ResumeStudy(ctx, &pb.ResumeStudyRequest{StudyId: id})
				st, err = r.GetStudy(), e
			case "cancel":
				r, e := client.CancelStudy(ctx, &pb.CancelStudyRequest{StudyId: id})
				st, err = r.GetStudy(), e
			}
			if err != nil {
				return err
			}
			if c.output == "json" {
				return writeJSON(c.out, st)
			}
			fmt.Fprintf(c.out, "study %d is %s\n", st.Id, studyState(st.State))
			return nil
		})
}

func (c *cli) trialsCmd() *cobra.Command {
	var state, scale string
	cmd := &cobra.Command{
		Use:   "trials STUDY_ID",
		Short: "List a study's trials",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0], "STUDY_ID")
			if err != nil {
				return err
			}
			req := &pb.ListTrialsRequest{StudyId: id, Scale: scale}
			if state != "" {
				v, ok := pb.TrialState_value["TRIAL_STATE_"+strings.ToUpper(state)]
				if !ok {
					return usageError{fmt.Errorf("--state: unknown state %q", state)}
				}
				req.State = pb.TrialState(v)
			}
			return c.call(func(ctx context.Context, client pb.ControlServiceClient) error {
				trials, err := listAllTrials(ctx, client, req)
				if err != nil {
					return err
				}
				if c.output == "json" {
					st, err := client.GetStudy(ctx, &pb.GetStudyRequest{StudyId: id})
					if err != nil {
						return err
					}
					return writeJSON(c.out, &pb.ListTrialsResponse{Trials: trials}, domainNames(st.Status.Study.Spec)...)
				}
				printTrials(c.out, trials)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only trials in this state (pending, running, succeeded, failed, stopped, lost)")
	cmd.Flags().StringVar(&scale, "scale", "", "only trials at this scale")
	return cmd
}

func (c *cli) trialCmd() *cobra.Command {
	cmd := c.idCmd("trial TRIAL_ID | trial cancel TRIAL_ID | trial add STUDY_ID ...", "Show one trial and its curve, cancel it, or add one by hand", "TRIAL_ID",
		func(ctx context.Context, client pb.ControlServiceClient, id uint64) error {
			resp, err := client.GetTrial(ctx, &pb.GetTrialRequest{TrialId: id})
			if err != nil {
				return err
			}
			if c.output == "json" {
				st, err := client.GetStudy(ctx, &pb.GetStudyRequest{StudyId: resp.Trial.StudyId})
				if err != nil {
					return err
				}
				return writeJSON(c.out, resp, domainNames(st.Status.Study.Spec)...)
			}
			printTrial(c.out, resp)
			return nil
		})
	cmd.AddCommand(c.idCmd("cancel TRIAL_ID", "Stop a trial at its current step; its observed curve is kept", "TRIAL_ID",
		func(ctx context.Context, client pb.ControlServiceClient, id uint64) error {
			resp, err := client.CancelTrial(ctx, &pb.CancelTrialRequest{TrialId: id})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return writeJSON(c.out, resp.Trial)
			}
			fmt.Fprintf(c.out, "trial %d: %s (stop requested)\n", id, trialState(resp.Trial.State))
			return nil
		}))
	cmd.AddCommand(c.trialAddCmd())
	return cmd
}

func (c *cli) workersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "workers",
		Short: "List workers, drain one, or forget a lost one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(func(ctx context.Context, client pb.ControlServiceClient) error {
				workers, err := listAllWorkers(ctx, client)
				if err != nil {
					return err
				}
				if c.output == "json" {
					return writeJSON(c.out, &pb.ListWorkersResponse{Workers: workers})
				}
				printWorkers(c.out, workers, time.Now())
				return nil
			})
		},
	}
	var undrain bool
	drain := c.idCmd("drain WORKER_ID", "Give a worker no new trials (its running ones finish); --undrain reverses it", "WORKER_ID",
		func(ctx context.Context, client pb.ControlServiceClient, id uint64) error {
			resp, err := client.DrainWorker(ctx, &pb.DrainWorkerRequest{WorkerId: id, Undrain: undrain})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return writeJSON(c.out, resp.Worker)
			}
			fmt.Fprintf(c.out, "worker %d: %s\n", id, strings.ToLower(strings.TrimPrefix(resp.Worker.State.String(), "WORKER_STATE_")))
			return nil
		})
	drain.Flags().BoolVar(&undrain, "undrain", false, "let the worker take trials again")
	cmd.AddCommand(drain, c.workerForgetCmd())
	return cmd
}

func (c *cli) bestCmd() *cobra.Command {
	return c.idCmd("best STUDY_ID", "The recommended mixture at the target, with its 90% interval", "STUDY_ID",
		func(ctx context.Context, client pb.ControlServiceClient, id uint64) error {
			st, err := client.GetStudy(ctx, &pb.GetStudyRequest{StudyId: id})
			if err != nil {
				return err
			}
			rec, err := client.GetRecommendation(ctx, &pb.GetRecommendationRequest{StudyId: id})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return writeJSON(c.out, rec.Recommendation, domainNames(st.Status.Study.Spec)...)
			}
			printRecommendation(c.out, st.Status.Study.Spec, rec.Recommendation)
			return nil
		})
}

// readSpec reads a YAML or JSON study spec (scheduler.ParseSpec: an unknown field or a
// key given twice is an error that names it).
func readSpec(path string) (*pb.StudySpec, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(io.LimitReader(os.Stdin, scheduler.MaxSpecBytes+1))
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("read spec: %w", err)}
	}
	spec, err := scheduler.ParseSpec(raw)
	if err != nil {
		return nil, usageError{fmt.Errorf("%s: %w", path, err)}
	}
	return spec, nil
}

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

// writeJSON prints a proto message as indented JSON (see jsonValue); domains name the
// mixtures of messages that do not carry their study's spec.
func writeJSON(w io.Writer, m proto.Message, domains ...string) error {
	v, err := jsonValue(m, domains)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return indentTo(w, b)
}

// writeStatusJSON prints {"studies": [...], "workers": [...]}.
func writeStatusJSON(w io.Writer, studies []*pb.StudyStatus, workers []*pb.Worker) error {
	out := struct {
		Studies []any `json:"studies"`
		Workers []any `json:"workers"`
	}{Studies: []any{}, Workers: []any{}}
	for _, s := range studies {
		v, err := jsonValue(s, nil)
		if err != nil {
			return err
		}
		out.Studies = append(out.Studies, v)
	}
	for _, wk := range workers {
		v, err := jsonValue(wk, nil)
		if err != nil {
			return err
		}
		out.Workers = append(out.Workers, v)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return indentTo(w, b)
}

func indentTo(w io.Writer, b []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// domainNames lists a spec's domains in mixture order.
func domainNames(spec *pb.StudySpec) []string {
	names := make([]string, len(spec.GetDomains()))
	for i, d := range spec.GetDomains() {
		names[i] = d.GetName()
	}
	return names
}
