package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/mixopt/mixopt/internal/sim"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// exportCmd writes a study's trials and curves for analysis elsewhere, or as a recording
// that simulated workers replay.
func (c *cli) exportCmd() *cobra.Command {
	var format, file string
	cmd := &cobra.Command{
		Use:   "export STUDY_ID",
		Short: "Export a study's trials and curves as CSV, JSONL, or a recording simulated workers replay",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0], "STUDY_ID")
			if err != nil {
				return err
			}
			if format != "csv" && format != "jsonl" && format != "recording" {
				return usageError{fmt.Errorf("--format: %q is not csv, jsonl or recording", format)}
			}
			return c.call(func(ctx context.Context, client pb.ControlServiceClient) error {
				st, err := client.GetStudy(ctx, &pb.GetStudyRequest{StudyId: id})
				if err != nil {
					return err
				}
				list, err := listAllTrials(ctx, client, &pb.ListTrialsRequest{StudyId: id})
				if err != nil {
					return err
				}
				var trials []*pb.GetTrialResponse
				for _, t := range list {
					r, err := client.GetTrial(ctx, &pb.GetTrialRequest{TrialId: t.Id})
					if err != nil {
						return err
					}
					trials = append(trials, r)
				}
				out := c.out
				if file != "" && file != "-" {
					f, err := os.Create(file)
					if err != nil {
						return err
					}
					defer f.Close()
					out = f
				}
				spec := st.Status.Study.Spec
				switch format {
				case "csv":
					return exportCSV(out, spec, trials)
				case "jsonl":
					return exportJSONL(out, trials)
				default:
					return exportRecording(out, st.Status.Study, trials)
				}
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "csv", "csv (a row per point), jsonl (a trial per line) or recording (docs/recording-format.md)")
	cmd.Flags().StringVarP(&file, "file", "f", "", "write to this file instead of standard output")
	return cmd
}

func exportCSV(w io.Writer, spec *pb.StudySpec, trials []*pb.GetTrialResponse) error {
	var metrics []string
	for _, t := range trials {
		for _, p := range t.Points {
			for k := range p.Eval {
				if !slices.Contains(metrics, k) {
					metrics = append(metrics, k)
				}
			}
		}
	}
	slices.Sort(metrics)
	cw := csv.NewWriter(w)
	header := []string{"trial", "state", "attempt", "scale", "steps"}
	for _, d := range spec.Domains {
		header = append(header, "w_"+d.Name)
	}
	header = append(header, "seq", "step", "tokens", "train_loss", "wall_time_s")
	cw.Write(append(header, metrics...))
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	for _, t := range trials {
		tr := t.Trial
		for _, p := range t.Points {
			row := []string{fmt.Sprint(tr.Id), trialState(tr.State), fmt.Sprint(tr.Attempt), tr.Scale, fmt.Sprint(tr.Steps)}
			for _, w := range tr.Mixture {
				row = append(row, f(w))
			}
			row = append(row, fmt.Sprint(p.Seq), fmt.Sprint(p.Step), fmt.Sprint(p.Tokens), f(p.TrainLoss), f(p.WallTimeS))
			for _, m := range metrics {
				v, ok := p.Eval[m]
				if ok {
					row = append(row, f(v))
				} else {
					row = append(row, "")
				}
			}
			cw.Write(row)
		}
	}
	cw.Flush()
	return cw.Error()
}

func exportJSONL(w io.Writer, trials []*pb.GetTrialResponse) error {
	for _, t := range trials {
		b, err := jsonOpts.Marshal(t)
		if err != nil {
			return err
		}
		// One compact line per trial: re-encode through encoding/json to drop the
		// whitespace protojson may add.
		var compact json.RawMessage = b
		line, err := json.Marshal(compact)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
			return err
		}
	}
	return nil
}

// exportRecording writes every trial that ran to the end (succeeded) as a recorded run.
func exportRecording(w io.Writer, study *pb.Study, trials []*pb.GetTrialResponse) error {
	spec := study.Spec
	domains := make([]string, len(spec.Domains))
	for i, d := range spec.Domains {
		domains[i] = d.Name
	}
	n := 0
	for _, t := range trials {
		tr := t.Trial
		if tr.State != pb.TrialState_TRIAL_STATE_SUCCEEDED || len(t.Points) == 0 {
			continue
		}
		var scale *pb.Scale
		for _, sc := range spec.Scales {
			if sc.Name == tr.Scale {
				scale = sc
			}
		}
		if scale == nil {
			return fmt.Errorf("trial %d: scale %q is not in the study's spec", tr.Id, tr.Scale)
		}
		points := make([]sim.Point, len(t.Points))
		for i, p := range t.Points {
			points[i] = sim.Point{Step: p.Step, Tokens: p.Tokens, TrainLoss: p.TrainLoss, Eval: p.Eval, WallTime: p.WallTimeS}
		}
		req := sim.Request{Domains: domains, Mixture: tr.Mixture, Scale: tr.Scale, Params: scale.Params,
			FlopsPerStep: scale.FlopsPerStep, TokensPerStep: scale.TokensPerStep, Steps: tr.Steps}
		run := sim.NewRecordedRun(fmt.Sprintf("study-%d-trial-%d", study.Id, tr.Id), req, points,
			map[string]any{"exported_from": "mixctl export", "study": study.Id, "trial": tr.Id, "source_run": tr.SourceRun})
		if err := sim.WriteRecordedRun(w, run); err != nil {
			return fmt.Errorf("trial %d: %w", tr.Id, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("study %d has no succeeded trial to record", study.Id)
	}
	return nil
}

// backupCmd saves a consistent copy of the coordinator's database while it serves.
func (c *cli) backupCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "backup -f FILE",
		Short: "Save an online, consistent copy of the coordinator's database (docs/deployment.md)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{fmt.Errorf("-f: a file to write is required")}
			}
			return c.call(func(ctx context.Context, client pb.ControlServiceClient) error {
				stream, err := client.Backup(ctx, &pb.BackupRequest{})
				if err != nil {
					return err
				}
				// Write next to the target and rename at the end: a failed backup never
				// leaves a truncated file under the name asked for.
				tmp := file + ".partial"
				// 0600, like the database: the copy holds every study's results.
				f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer os.Remove(tmp)
				var n int64
				for {
					msg, err := stream.Recv()
					if err == io.EOF {
						break
					}
					if err != nil {
						f.Close()
						return err
					}
					k, err := f.Write(msg.Chunk)
					n += int64(k)
					if err != nil {
						f.Close()
						return err
					}
				}
				if err := f.Sync(); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				if err := os.Rename(tmp, file); err != nil {
					return err
				}
				fmt.Fprintf(c.out, "backed up %d bytes to %s\n", n, file)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "where to write the copy")
	return cmd
}
