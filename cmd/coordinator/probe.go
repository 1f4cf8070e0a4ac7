package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/mixopt/mixopt/internal/coordinator"
)

// runProbe is `coordinator probe`: exit 0 when the coordinator at -addr serves, 1 when
// not. Kubernetes runs it as an exec probe, because its built-in gRPC probe cannot speak
// TLS.
func runProbe(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	var pc coordinator.ProbeConfig
	fs.StringVar(&pc.Addr, "addr", "127.0.0.1:7070", "coordinator gRPC address")
	fs.BoolVar(&pc.TLS, "tls", false, "connect with TLS, trusting the system's roots (implied by the other -tls flags)")
	fs.StringVar(&pc.CAFile, "tls-ca", "", "CA file to verify the coordinator's certificate with")
	fs.StringVar(&pc.CertFile, "tls-cert", "", "client certificate for mutual TLS (with -tls-key)")
	fs.StringVar(&pc.KeyFile, "tls-key", "", "client key for mutual TLS (with -tls-cert)")
	fs.StringVar(&pc.ServerName, "tls-server-name", "", "name to check the certificate against (default: the host dialled)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := coordinator.Probe(ctx, pc); err != nil {
		fmt.Fprintln(os.Stderr, "coordinator probe:", err)
		return 1
	}
	return 0
}
