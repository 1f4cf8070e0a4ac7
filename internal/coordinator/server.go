package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

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
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(cfg.MaxMessageBytes)}
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
