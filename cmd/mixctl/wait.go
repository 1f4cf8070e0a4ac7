package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// waitCmd blocks until a study ends, printing a progress line whenever it changes: scripts
// and the demo use it instead of polling status themselves.
func (c *cli) waitCmd() *cobra.Command {
	var interval, limit time.Duration
	cmd := &cobra.Command{
		Use:   "wait STUDY_ID",
		Short: "Wait until a study ends, printing progress; exits 1 unless it completed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.pollID(args[0], "STUDY_ID", func(client pb.ControlServiceClient, id uint64) error {
				deadline := time.Now().Add(limit)
				last := ""
				for {
					ctx, cancel := c.ctx()
					resp, err := client.GetStudy(ctx, &pb.GetStudyRequest{StudyId: id})
					cancel()
					if status.Code(err) == codes.Unavailable && (limit == 0 || time.Now().Before(deadline)) {
						// The coordinator may be restarting: keep waiting for it.
						time.Sleep(interval)
						continue
					}
					if err != nil {
						return err
					}
					st := resp.Status
					n := st.TrialsByState
					line := fmt.Sprintf("study %d %s: %d running, %d succeeded, %d failed; budget %s",
						id, studyState(st.Study.State), n["running"], n["succeeded"], n["failed"],
						formatBudget(st.Study.SpentFlops, st.Study.Spec.BudgetFlops))
					if line != last && c.output == "table" {
						fmt.Fprintln(c.out, line)
						last = line
					}
					switch st.Study.State {
					case pb.StudyState_STUDY_STATE_COMPLETED, pb.StudyState_STUDY_STATE_CANCELLED, pb.StudyState_STUDY_STATE_FAILED:
						if c.output == "json" {
							if err := writeJSON(c.out, st); err != nil {
								return err
							}
						}
						return endedBadly(st.Study)
					}
					if limit > 0 && time.Now().After(deadline) {
						return fmt.Errorf("study %d still %s after %s", id, studyState(st.Study.State), limit)
					}
					time.Sleep(interval)
				}
			})
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 500*time.Millisecond, "polling interval")
	cmd.Flags().DurationVar(&limit, "limit", 0, "give up after this long (0: never)")
	return cmd
}

// endedBadly is the error wait exits with for a study that did not complete on its own (it
// failed or was cancelled), so that scripts chaining on wait stop there.
func endedBadly(st *pb.Study) error {
	if st.State == pb.StudyState_STUDY_STATE_COMPLETED {
		return nil
	}
	return fmt.Errorf("study %d %s: %s", st.Id, studyState(st.State), st.EndReason)
}
