package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mixopt/mixopt/internal/sim"
)

// recordingCmd checks recordings and converts other people's tables of runs into one;
// neither talks to a coordinator.
func (c *cli) recordingCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "recording", Short: "Check a recording, or convert a CSV of runs into one (docs/recording-format.md)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Report every problem of a recording with its line and field (exit 1 when any line would not load)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if err := c.checkOutput(); err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			runs, problems, err := sim.CheckRecording(bufio.NewReader(f))
			if err != nil {
				return err
			}
			errs := 0
			for _, p := range problems {
				if !p.Warning {
					errs++
				}
			}
			if c.output == "json" {
				b, err := json.Marshal(struct {
					Runs     int           `json:"runs"`
					Problems []sim.Problem `json:"problems"`
				}{runs, append([]sim.Problem{}, problems...)})
				if err != nil {
					return err
				}
				if err := indentTo(c.out, b); err != nil {
					return err
				}
			} else {
				for _, p := range problems {
					fmt.Fprintf(c.out, "%s: %s\n", args[0], p)
				}
				fmt.Fprintf(c.out, "%s: %d runs load, %d errors, %d warnings\n", args[0], runs, errs, len(problems)-errs)
			}
			if errs > 0 {
				return fmt.Errorf("%s: %d lines would not load", args[0], errs)
			}
			return nil
		},
	})
	var opts sim.CSVOptions
	var domains, metrics, outFile string
	fromCSV := &cobra.Command{
		Use:   "from-csv FILE.csv -f OUT.jsonl --domains COL,... [--metrics COL,...]",
		Short: "Convert a CSV of runs (mixture, metric, scale, params and step columns) into a recording",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if outFile == "" || domains == "" {
				return usageError{fmt.Errorf("-f and --domains are required")}
			}
			opts.Domains = strings.Split(domains, ",")
			if metrics != "" {
				opts.Metrics = strings.Split(metrics, ",")
			}
			opts.Source = args[0]
			in, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			runs, problems, err := sim.RunsFromCSV(bufio.NewReader(in), opts)
			if err != nil {
				return usageError{err}
			}
			errs := 0
			for _, p := range problems {
				fmt.Fprintf(os.Stderr, "%s: %s\n", args[0], p)
				if !p.Warning {
					errs++
				}
			}
			if errs > 0 {
				return fmt.Errorf("%s: %d problems; nothing written", args[0], errs)
			}
			tmp := outFile + ".partial"
			out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			defer os.Remove(tmp)
			w := bufio.NewWriter(out)
			for _, r := range runs {
				if err := sim.WriteRecordedRun(w, r); err != nil {
					out.Close()
					return err
				}
			}
			if err := w.Flush(); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp, outFile); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "wrote %d runs to %s\n", len(runs), outFile)
			return nil
		},
	}
	fromCSV.Flags().StringVarP(&outFile, "file", "f", "", "recording to write")
	fromCSV.Flags().StringVar(&domains, "domains", "", "mixture columns, in order (their names become the domains)")
	fromCSV.Flags().StringVar(&metrics, "metrics", "", "columns that become eval metrics")
	fromCSV.Flags().StringVar(&opts.TrainLoss, "train-loss", "train_loss", "column of the training loss")
	fromCSV.Flags().Int64Var(&opts.TokensPerStep, "tokens-per-step", 0, "tokens per step, for a table with no tokens or tokens_per_step column")
	fromCSV.Flags().Float64Var(&opts.FlopsPerSecond, "flops-per-second", 0, "derive wall_time_s from FLOPs for a table without it")
	cmd.AddCommand(fromCSV)
	return cmd
}
