package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mixopt/mixopt/internal/auth"
	"github.com/mixopt/mixopt/internal/buildinfo"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// cli holds what every subcommand shares: flags, the output and the client.
type cli struct {
	out     io.Writer
	addr    string
	output  string
	timeout time.Duration
	// Security: a bearer token (file or environment) and TLS files.
	tokenFile, tlsCA, tlsCert, tlsKey, tlsServerName string
	// tls turns TLS on with the system's roots (a coordinator certificate from a public
	// or company CA installed on this machine); --tls-ca turns it on with a given CA.
	tls bool
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
	root.PersistentFlags().StringVar(&c.tokenFile, "token-file", "", "file holding the bearer token (env MIXOPT_TOKEN_FILE or MIXOPT_TOKEN)")
	root.PersistentFlags().StringVar(&c.tlsCA, "tls-ca", os.Getenv("MIXOPT_TLS_CA"), "CA certificate of the coordinator: turns TLS on (env MIXOPT_TLS_CA)")
	root.PersistentFlags().BoolVar(&c.tls, "tls", os.Getenv("MIXOPT_TLS") == "1", "use TLS, trusting the system's root CAs (env MIXOPT_TLS=1); --tls-ca names the CA instead")
	root.PersistentFlags().StringVar(&c.tlsCert, "tls-cert", "", "client certificate, for mutual TLS")
	root.PersistentFlags().StringVar(&c.tlsKey, "tls-key", "", "client key, for mutual TLS")
	root.PersistentFlags().StringVar(&c.tlsServerName, "tls-server-name", "", "name the coordinator's certificate must carry (default: the host of --addr)")
	root.AddCommand(c.statusCmd(), c.studiesCmd(), c.studyCmd(), c.trialsCmd(), c.trialCmd(), c.workersCmd(),
		c.bestCmd(), c.watchCmd(), c.exportCmd(), c.backupCmd(), c.recordingCmd())
	root.Version = buildinfo.Version()
	root.SetVersionTemplate("mixopt mixctl {{.Version}}\n")
	root.AddCommand(c.verifyCmd())
	usageArgs(root)
	return root
}

// usageArgs makes every argument mistake a usageError (exit 2, as documented): a missing
// or extra argument, and an unknown subcommand, which cobra reports as plain errors.
func usageArgs(cmd *cobra.Command) {
	check := cmd.Args
	hasSub := cmd.HasSubCommands()
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if check == nil {
			if cmd.Parent() == nil && len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())}
			}
			return nil
		}
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w (usage: %s)", cmd.CommandPath(), err, cmd.UseLine())}
		}
		return nil
	}
	if hasSub && !cmd.Runnable() {
		// A command group run alone, or with an unknown subcommand, is a usage mistake too.
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())}
			}
			fmt.Fprint(cmd.ErrOrStderr(), cmd.UsageString())
			return usageError{fmt.Errorf("%s needs a subcommand", cmd.CommandPath())}
		}
	}
	for _, sub := range cmd.Commands() {
		usageArgs(sub)
	}
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
	opts, err := c.dialOptions()
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(c.addr, opts...)
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

// dialOptions sets up TLS when a CA or client certificate is given and sends the bearer
// token when one is found; tokens are only sent in the clear to loopback addresses.
func (c *cli) dialOptions() ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	secure := c.secure()
	if secure {
		tc, err := auth.ClientTLSConfig(c.tlsCA, c.tlsCert, c.tlsKey, c.tlsServerName)
		if err != nil {
			return nil, usageError{err}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	token, err := auth.ClientToken(c.tokenFile)
	if err != nil {
		return nil, usageError{err}
	}
	if token != "" {
		if !secure && !auth.IsLoopback(c.addr) {
			return nil, usageError{fmt.Errorf("--addr %s: refusing to send a token without TLS to a non-loopback address (give --tls or --tls-ca)", c.addr)}
		}
		creds, err := auth.NewTokenCredentials(token, !auth.IsLoopback(c.addr))
		if err != nil {
			return nil, usageError{err}
		}
		opts = append(opts, grpc.WithPerRPCCredentials(creds))
	}
	return opts, nil
}

// call dials the coordinator and runs fn with a client and a context bounded by
// --timeout; every subcommand that makes calls goes through it.
func (c *cli) call(fn func(ctx context.Context, client pb.ControlServiceClient) error) error {
	client, done, err := c.client()
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := c.ctx()
	defer cancel()
	return c.explain(fn(ctx, client))
}

func (c *cli) secure() bool { return c.tls || c.tlsCA != "" || c.tlsCert != "" }

// explain adds what to do to the transport errors of a TLS mismatch, which gRPC reports
// only as a connection that ended: a plaintext client's first bytes are no TLS handshake
// to a TLS server (it hangs up before its preface), and a TLS client gets an HTTP/2
// preface from a plaintext server. The code (Unavailable) stays.
func (c *cli) explain(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return err
	}
	msg := st.Message()
	switch {
	case !c.secure() && (strings.Contains(msg, "server preface") || strings.Contains(msg, "connection reset")):
		return status.Error(codes.Unavailable, msg+" (the coordinator may require TLS: give --tls-ca CA_FILE, or --tls to trust the system's root CAs)")
	case c.secure() && strings.Contains(msg, "first record does not look like a TLS handshake"):
		return status.Error(codes.Unavailable, msg+" (the coordinator does not serve TLS: drop --tls and --tls-ca)")
	}
	return err
}

// pollID parses the id argument and dials the coordinator for a command that polls: fn
// bounds each of its calls with its own c.ctx(), since one deadline cannot cover a wait.
func (c *cli) pollID(arg, idName string, fn func(client pb.ControlServiceClient, id uint64) error) error {
	id, err := parseID(arg, idName)
	if err != nil {
		return err
	}
	client, done, err := c.client()
	if err != nil {
		return err
	}
	defer done()
	return c.explain(fn(client, id))
}

// idCmd is a subcommand that takes one id argument (named idName in errors) and makes its
// calls with it.
func (c *cli) idCmd(use, short, idName string, run func(ctx context.Context, client pb.ControlServiceClient, id uint64) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			id, err := parseID(args[0], idName)
			if err != nil {
				return err
			}
			return c.call(func(ctx context.Context, client pb.ControlServiceClient) error { return run(ctx, client, id) })
		},
	}
}
