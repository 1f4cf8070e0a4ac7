package coordinator

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mixopt/mixopt/internal/auth"
)

// ProbeConfig says how a health probe reaches a coordinator: the same TLS settings a
// client would use, so that a probe of a TLS (or mutual TLS) coordinator does not
// connect in plaintext as Kubernetes' built-in gRPC probe does.
type ProbeConfig struct {
	Addr string
	// TLS is implied by any of the files; with none of them, TLS uses the system roots.
	TLS                       bool
	CAFile, CertFile, KeyFile string
	ServerName                string
}

// Probe asks the coordinator's standard gRPC health service whether it serves. The
// health service answers without a token, so the probe needs none.
func Probe(ctx context.Context, pc ProbeConfig) error {
	creds := insecure.NewCredentials()
	if pc.TLS || pc.CAFile != "" || pc.CertFile != "" || pc.KeyFile != "" {
		tc, err := auth.ClientTLSConfig(pc.CAFile, pc.CertFile, pc.KeyFile, pc.ServerName)
		if err != nil {
			return err
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(pc.Addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("probe %s: %w", pc.Addr, err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("probe %s: %w", pc.Addr, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("probe %s: status %s", pc.Addr, resp.GetStatus())
	}
	return nil
}
