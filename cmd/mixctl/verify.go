package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// verifyCmd asks the coordinator to read and check every record of its database.
func (c *cli) verifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check every record of the coordinator's database (checksums and invariants); names damaged records",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.call(func(ctx context.Context, client pb.ControlServiceClient) error {
				resp, err := client.VerifyStore(ctx, &pb.VerifyStoreRequest{})
				if err != nil {
					return err
				}
				if c.output == "json" {
					if err := writeJSON(c.out, resp); err != nil {
						return err
					}
				} else {
					printVerify(c.out, resp)
				}
				if len(resp.Problems) > 0 {
					return fmt.Errorf("the database is damaged: %d problems found (docs/store.md: restore from a backup)", len(resp.Problems))
				}
				return nil
			})
		},
	}
}

func printVerify(w io.Writer, resp *pb.VerifyStoreResponse) {
	took := (time.Duration(resp.DurationMs) * time.Millisecond).String()
	if len(resp.Problems) == 0 {
		fmt.Fprintf(w, "store ok: %d records checked in %s\n", resp.Records, took)
		return
	}
	fmt.Fprintf(w, "store DAMAGED: %d records checked in %s, problems:\n", resp.Records, took)
	for _, p := range resp.Problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
}

// storeHealthLine fetches the coordinator's store health for `mixctl status`; a
// coordinator that predates the RPC gives no line.
func storeHealthLine(ctx context.Context, client pb.ControlServiceClient, now time.Time) (string, error) {
	h, err := client.GetStoreHealth(ctx, &pb.GetStoreHealthRequest{})
	if status.Code(err) == codes.Unimplemented {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return formatStoreHealth(h, now), nil
}

// formatStoreHealth says in one line whether the coordinator's writes succeed, and if
// they failed, when last and whether they have recovered since.
func formatStoreHealth(h *pb.GetStoreHealthResponse, now time.Time) string {
	if h.WriteFailures == 0 {
		return "store: writes ok"
	}
	line := fmt.Sprintf("store: %d failed writes, last %s: %s; ", h.WriteFailures, formatAgo(h.LastWriteErrorUnixMs, now), h.LastWriteError)
	if h.LastWriteOkUnixMs > h.LastWriteErrorUnixMs {
		return line + "writes ok again since " + formatAgo(h.LastWriteOkUnixMs, now)
	}
	return line + "FAILING: no write has succeeded since (workers are retrying)"
}
