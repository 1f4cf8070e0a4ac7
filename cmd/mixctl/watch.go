package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func (c *cli) studiesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "studies",
		Short: "List studies with their progress and best mixture",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(func(ctx context.Context, client pb.ControlServiceClient) error {
				studies, err := listAllStudies(ctx, client)
				if err != nil {
					return err
				}
				if c.output == "json" {
					return writeJSON(c.out, &pb.ListStudiesResponse{Studies: studies})
				}
				printStudies(c.out, studies)
				return nil
			})
		},
	}
}

// watchCmd redraws a study's progress until it ends: its status line, its recommendation
// and its latest trials. With -o json it prints one status object per change instead.
func (c *cli) watchCmd() *cobra.Command {
	var interval time.Duration
	var recent int
	cmd := &cobra.Command{
		Use:   "watch STUDY_ID",
		Short: "Follow a study live until it ends",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.pollID(args[0], "STUDY_ID", func(client pb.ControlServiceClient, id uint64) error {
				for {
					ctx, cancel := c.ctx()
					st, err := client.GetStudy(ctx, &pb.GetStudyRequest{StudyId: id})
					var trials []*pb.Trial
					if err == nil {
						trials, err = listAllTrials(ctx, client, &pb.ListTrialsRequest{StudyId: id})
					}
					cancel()
					if err != nil {
						return err
					}
					if c.output == "json" {
						if err := writeJSON(c.out, st.Status); err != nil {
							return err
						}
					} else {
						if isTerminal(c.out) {
							fmt.Fprint(c.out, "\033[H\033[2J") // clear the terminal: a live view
						} else {
							fmt.Fprintln(c.out, "---") // a pipe or file gets one plain block per refresh
						}
						fmt.Fprintf(c.out, "mixctl watch %d — every %s, Ctrl-C to stop\n\n", id, interval)
						printStudies(c.out, []*pb.StudyStatus{st.Status})
						fmt.Fprintln(c.out)
						ts := trials
						printTrials(c.out, ts[max(0, len(ts)-recent):])
					}
					switch st.Status.Study.State {
					case pb.StudyState_STUDY_STATE_COMPLETED, pb.StudyState_STUDY_STATE_CANCELLED, pb.StudyState_STUDY_STATE_FAILED:
						return nil
					}
					time.Sleep(interval)
				}
			})
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh interval")
	cmd.Flags().IntVar(&recent, "recent", 15, "latest trials shown")
	return cmd
}

// isTerminal says whether w is a character device (a terminal), where escape codes that
// clear the screen belong; pipes and files get plain text.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
