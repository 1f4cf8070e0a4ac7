package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// cli holds what every subcommand shares: flags, the output and the client.
type cli struct {
	out     io.Writer
	addr    string
	output  string
	timeout time.Duration
}

func newRootCmd(out io.Writer) *cobra.Command {
	c := &cli{out: out}
	root := &cobra.Command{
		Use:           "mixctl",
		Short:         "Operate a mixopt coordinator",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	addr := os.Getenv("MIXOPT_ADDR")
	if addr == "" {
		addr = "127.0.0.1:7070"
	}
	root.PersistentFlags().StringVar(&c.addr, "addr", addr, "coordinator address (env MIXOPT_ADDR)")
	root.PersistentFlags().StringVarP(&c.output, "output", "o", "table", "output format: table or json")
	root.PersistentFlags().DurationVar(&c.timeout, "timeout", 30*time.Second, "timeout of each call")
	root.AddCommand(c.statusCmd(), c.studyCmd(), c.trialsCmd(), c.trialCmd(), c.workersCmd(), c.bestCmd())
	return root
}

func (c *cli) checkOutput() error {
	if c.output != "table" && c.output != "json" {
		return usageError{fmt.Errorf("--output: %q is not table or json", c.output)}
	}
	return nil
}

// client dials the coordinator; the returned close function must be called.
func (c *cli) client() (pb.ControlServiceClient, func(), error) {
	if err := c.checkOutput(); err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", c.addr, err)
	}
	return pb.NewControlServiceClient(conn), func() { conn.Close() }, nil
}

func (c *cli) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.timeout)
}

func parseID(arg, what string) (uint64, error) {
	id, err := strconv.ParseUint(arg, 10, 64)
	if err != nil || id == 0 {
		return 0, usageError{fmt.Errorf("%s: %q is not a positive integer id", what, arg)}
	}
	return id, nil
}
