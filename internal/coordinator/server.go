package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mixopt/mixopt/internal/auth"
	"github.com/mixopt/mixopt/internal/dashboard"
	"github.com/mixopt/mixopt/internal/metrics"
	"github.com/mixopt/mixopt/internal/scheduler"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Config is the coordinator's configuration; cmd/coordinator fills it from its file and
// flags.
type Config struct {
	// Listen is the gRPC TCP address (port 0 picks a free one).
	Listen string
	// HTTPListen serves /metrics and the dashboard ("" turns it off).
	HTTPListen string
	// AddrFile, when set, receives the gRPC address actually listened on (for scripts
	// and tests); HTTPAddrFile the HTTP one.
	AddrFile, HTTPAddrFile string
	// DBPath is the bbolt file holding all state.
	DBPath string
	// DBOpenTimeout bounds the wait for another process's lock on the file.
	DBOpenTimeout time.Duration
	// StopTimeout bounds the graceful stop before connections are cut.
	StopTimeout time.Duration
	// MaxMessageBytes bounds received messages.
	MaxMessageBytes int
	// MaxConnectionIdle closes a client connection that has had no call for this long
	// (default 5 minutes); a client redials on its next call. Workers always have a call
	// open or due within a heartbeat, so only abandoned connections go.
	MaxConnectionIdle time.Duration
	// CreateDB lets Run create DBPath when it does not exist; without it a missing file is
	// an error, so a mistyped path does not start an empty coordinator.
	CreateDB bool
	// TokensFile enables bearer-token authentication with roles (docs/security.md).
	TokensFile string
	// TLS certificate and key; a client CA makes TLS mutual.
	TLSCert, TLSKey, TLSClientCA string
	// RegisterRate and RegisterBurst bound worker registrations per second.
	RegisterRate  float64
	RegisterBurst int
	// ReloadTokens, when it receives, makes the coordinator read TokensFile again (token
	// rotation without a restart; cmd/coordinator sends on SIGHUP).
	ReloadTokens <-chan struct{}
	Scheduler    scheduler.Config
	Logger       *zap.Logger
}

func (cfg *Config) setDefaults() {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 16 << 20
	}
	if cfg.MaxConnectionIdle <= 0 {
		cfg.MaxConnectionIdle = 5 * time.Minute
	}
	if cfg.RegisterRate <= 0 {
		cfg.RegisterRate = 20
	}
	if cfg.RegisterBurst <= 0 {
		cfg.RegisterBurst = 200
	}
}

// Run opens the store, serves the gRPC services (and, when configured, the HTTP dashboard
// and metrics) until ctx ends, then stops gracefully.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	log := cfg.Logger
	if err := checkDBExists(cfg.DBPath, cfg.CreateDB); err != nil {
		return err
	}
	recorder := metrics.New()
	db, err := store.Open(cfg.DBPath, store.Options{Timeout: cfg.DBOpenTimeout, OnWriteError: func(err error) {
		log.Error("store write failed; nothing of it was kept and the client was told to retry", zap.Error(err))
		recorder.StoreWriteFailed(time.Now())
	}})
	if err != nil {
		return err
	}
	defer db.Close()
	// No full check here: it reads every page, so start-up would grow with history.
	// Open has checked the meta pages, freelist, version and buckets; every record's
	// checksum is checked when it is read, and the full check is explicit
	// (coordinator -verify, mixctl verify).
	cfg.Scheduler.Logger = log
	cfg.Scheduler.Metrics = recorder
	sched, err := scheduler.New(db, cfg.Scheduler)
	if err != nil {
		return err
	}

	tlsConfig, authn, err := security(cfg)
	if err != nil {
		return err
	}
	opts := serverOptions(cfg)
	if tlsConfig != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	if authn != nil {
		opts = append(opts, authn.ServerOptions()...)
	} else if !auth.IsLoopback(cfg.Listen) {
		log.Warn("serving without tokens on a non-loopback address: anyone who reaches it can control studies",
			zap.String("listen", cfg.Listen))
	}
	// Chained after authentication: only authenticated registrations use up the budget.
	opts = append(opts, grpc.ChainUnaryInterceptor(auth.RateLimitUnary(
		auth.NewLimiter(cfg.RegisterRate, cfg.RegisterBurst, nil), pb.WorkerService_Register_FullMethodName)))
	srv := grpc.NewServer(opts...)
	pb.RegisterWorkerServiceServer(srv, &WorkerService{Sched: sched})
	pb.RegisterControlServiceServer(srv, &ControlService{Sched: sched, DB: db})
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(srv, healthSrv)
	reflection.Register(srv)

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	var httpSrv *http.Server
	var httpLis net.Listener
	if cfg.HTTPListen != "" {
		if httpLis, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
			lis.Close()
			return fmt.Errorf("listen on %s: %w", cfg.HTTPListen, err)
		}
		httpSrv = &http.Server{Handler: httpHandler(sched, recorder, authn), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConfig}
	}
	for path, addr := range map[string]net.Listener{cfg.AddrFile: lis, cfg.HTTPAddrFile: httpLis} {
		if path != "" && addr != nil {
			if err := writeFileAtomic(path, []byte(addr.Addr().String()+"\n")); err != nil {
				lis.Close()
				return err
			}
		}
	}
	log.Info("coordinator serving", zap.String("addr", lis.Addr().String()), zap.String("db", cfg.DBPath),
		zap.Bool("tls", tlsConfig != nil), zap.Bool("tokens", authn != nil))

	schedCtx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	go sched.Run(schedCtx)
	if authn != nil && cfg.ReloadTokens != nil {
		go reloadTokens(schedCtx, cfg, authn)
	}

	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(lis) }()
	if httpSrv != nil {
		log.Info("dashboard and metrics serving", zap.String("addr", httpLis.Addr().String()))
		go func() {
			var err error
			if tlsConfig != nil {
				err = httpSrv.ServeTLS(httpLis, "", "")
			} else {
				err = httpSrv.Serve(httpLis)
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			serveErr <- err
		}()
	}
	select {
	case err := <-serveErr:
		srv.Stop()
		if httpSrv != nil {
			httpSrv.Close()
		}
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("stopping")
	healthSrv.Shutdown()
	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.StopTimeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	if httpSrv != nil {
		if err := httpSrv.Shutdown(stopCtx); err != nil {
			httpSrv.Close()
		}
	}
	select {
	case <-stopped:
	case <-stopCtx.Done():
		log.Warn("graceful stop timed out; closing connections")
		srv.Stop()
	}
	return nil
}

// checkDBExists refuses to start on a database file that is not there unless create is
// set: store.Open would create it, and a coordinator on a mistyped path would serve an
// empty history as if it were the real one.
func checkDBExists(path string, create bool) error {
	if path == "" {
		return errors.New("db: no database file given")
	}
	_, err := os.Stat(path)
	switch {
	case err == nil, create && errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("db: %s does not exist; give -init to create a new database there", path)
	}
	return fmt.Errorf("db: %w", err)
}

// Keepalive: the server pings a connection silent for keepaliveTime and drops it when
// the ping goes unanswered for keepaliveTimeout; a client may ping at most every
// keepaliveMinPing, even between calls (a worker waiting for work), and one that pings
// more often is sent away (GOAWAY too_many_pings).
const (
	keepaliveTime    = 2 * time.Minute
	keepaliveTimeout = 20 * time.Second
	keepaliveMinPing = 10 * time.Second
)

// serverOptions are the gRPC server's options apart from security: message size,
// keepalive with a maximum idle time, and the codec that turns a request that does not
// decode into InvalidArgument.
func serverOptions(cfg Config) []grpc.ServerOption {
	undecodable := &sync.Map{}
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: cfg.MaxConnectionIdle,
			Time:              keepaliveTime,
			Timeout:           keepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinPing, PermitWithoutStream: true}),
		grpc.ForceServerCodecV2(requestCodec{base: encoding.GetCodecV2(grpcproto.Name), undecodable: undecodable}),
		// First in the chain, so that every decoded request passes it.
		grpc.ChainUnaryInterceptor(undecodableUnary(undecodable)),
		grpc.ChainStreamInterceptor(undecodableStream(undecodable)),
	}
}

// requestCodec is gRPC's protobuf codec, except that a message that fails to decode is
// remembered instead of failing: gRPC itself would answer Internal, which tells a client
// the coordinator is broken when the request is. The interceptors below answer
// InvalidArgument for it before any handler runs.
type requestCodec struct {
	base        encoding.CodecV2
	undecodable *sync.Map // message pointer → decode error
}

func (c requestCodec) Name() string                           { return c.base.Name() }
func (c requestCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	proto.Reset(m) // nothing half-decoded is ever seen
	c.undecodable.Store(v, err)
	return nil
}

func undecodableError(undecodable *sync.Map, m any) error {
	if err, bad := undecodable.LoadAndDelete(m); bad {
		return status.Errorf(codes.InvalidArgument, "request: not a valid %T message: %v", m, err)
	}
	return nil
}

func undecodableUnary(undecodable *sync.Map) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := undecodableError(undecodable, req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func undecodableStream(undecodable *sync.Map) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, decodeCheckedStream{ServerStream: ss, undecodable: undecodable})
	}
}

type decodeCheckedStream struct {
	grpc.ServerStream
	undecodable *sync.Map
}

func (s decodeCheckedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return undecodableError(s.undecodable, m)
}

// security builds the TLS configuration and the token authenticator the config asks for.
func security(cfg Config) (*tls.Config, *auth.Authenticator, error) {
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" || cfg.TLSKey != "" || cfg.TLSClientCA != "" {
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return nil, nil, errors.New("tls: both a certificate and a key are needed (tls_client_ca alone does not enable TLS)")
		}
		var err error
		if tlsConfig, err = auth.ServerTLSConfig(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA); err != nil {
			return nil, nil, err
		}
	}
	if cfg.TokensFile == "" {
		return tlsConfig, nil, nil
	}
	tokens, warning, err := auth.LoadTokensFile(cfg.TokensFile)
	if err != nil {
		return nil, nil, err
	}
	if warning != "" {
		cfg.Logger.Warn(warning)
	}
	return tlsConfig, auth.NewAuthenticator(tokens), nil
}

// reloadTokens swaps in the tokens file's current content on each signal; a file that
// does not load keeps the tokens in force.
func reloadTokens(ctx context.Context, cfg Config, authn *auth.Authenticator) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-cfg.ReloadTokens:
			tokens, warning, err := auth.LoadTokensFile(cfg.TokensFile)
			if err != nil {
				cfg.Logger.Error("tokens not reloaded; the previous ones stay in force", zap.Error(err))
				continue
			}
			if warning != "" {
				cfg.Logger.Warn(warning)
			}
			authn.SetTokens(tokens)
			cfg.Logger.Info("tokens reloaded", zap.Int("tokens", tokens.Len()))
		}
	}
}

// httpHandler serves /metrics and the read-only dashboard, behind the viewer role when
// tokens are on.
func httpHandler(sched *scheduler.Scheduler, recorder *metrics.Prometheus, authn *auth.Authenticator) http.Handler {
	var metricsHandler, dash http.Handler = recorder.Handler(), dashboard.Handler(sched)
	if authn != nil {
		metricsHandler = authn.HTTP(metricsHandler, auth.RoleViewer)
		dash = authn.HTTP(dash, auth.RoleViewer)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler)
	mux.Handle("/", dash)
	return mux
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename to %s: %w", path, err)
	}
	return nil
}
