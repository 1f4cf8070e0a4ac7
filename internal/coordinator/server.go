package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/mixopt/mixopt/internal/scheduler"
	"github.com/mixopt/mixopt/internal/store"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Config is the coordinator's configuration; cmd/coordinator fills it from flags.
type Config struct {
	// Listen is the TCP address to serve on (port 0 picks a free one).
	Listen string
	// AddrFile, when set, receives the address actually listened on (for scripts and tests).
	AddrFile string
	// DBPath is the bbolt file holding all state.
	DBPath string
	// DBOpenTimeout bounds the wait for another process's lock on the file.
	DBOpenTimeout time.Duration
	// StopTimeout bounds the graceful stop before connections are cut.
	StopTimeout time.Duration
	// MaxMessageBytes bounds received messages.
	MaxMessageBytes int
	Scheduler       scheduler.Config
	Logger          *zap.Logger
}

// Run opens the store, serves both services until ctx ends, then stops gracefully.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 16 << 20
	}
	db, err := store.Open(cfg.DBPath, store.Options{Timeout: cfg.DBOpenTimeout})
	if err != nil {
		return err
	}
	defer db.Close()
	// Open reads only the pages it needs; a full check finds damage deeper in the file
	// now rather than at the first transaction that reads it.
	if err := db.Check(); err != nil {
		return err
	}
	cfg.Scheduler.Logger = log
	sched, err := scheduler.New(db, cfg.Scheduler)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(cfg.MaxMessageBytes))
	pb.RegisterWorkerServiceServer(srv, &WorkerService{Sched: sched})
	pb.RegisterControlServiceServer(srv, &ControlService{Sched: sched})

	if cfg.AddrFile != "" {
		if err := writeFileAtomic(cfg.AddrFile, []byte(lis.Addr().String()+"\n")); err != nil {
			lis.Close()
			return err
		}
	}
	log.Info("coordinator serving", zap.String("addr", lis.Addr().String()), zap.String("db", cfg.DBPath))

	schedCtx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	go sched.Run(schedCtx)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("stopping")
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(cfg.StopTimeout):
		log.Warn("graceful stop timed out; closing connections")
		srv.Stop()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
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
