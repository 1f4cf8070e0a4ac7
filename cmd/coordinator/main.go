// Command coordinator serves mixopt's WorkerService and ControlService over gRPC, keeping
// all state in one bbolt file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/coordinator"
	"github.com/mixopt/mixopt/internal/logging"
)

func main() {
	var cfg coordinator.Config
	var logLevel string
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:7070", "TCP address to serve gRPC on (port 0: any free port)")
	flag.StringVar(&cfg.AddrFile, "addr-file", "", "write the address actually served on to this file")
	flag.StringVar(&cfg.DBPath, "db", "mixopt.db", "bbolt database file holding all state")
	flag.DurationVar(&cfg.DBOpenTimeout, "db-timeout", 0, "wait this long for another process's lock on the database (default 1s)")
	flag.DurationVar(&cfg.StopTimeout, "stop-timeout", 0, "bound on the graceful stop (default 10s)")
	flag.DurationVar(&cfg.Scheduler.LeaseTTL, "lease-ttl", 0, "trial lease time-to-live without heartbeats (default 20s)")
	flag.DurationVar(&cfg.Scheduler.HeartbeatInterval, "heartbeat", 0, "heartbeat interval told to workers (default lease-ttl/4)")
	flag.DurationVar(&cfg.Scheduler.RestartGrace, "restart-grace", 0, "extra lease time after a restart for workers to reattach (default 30s)")
	flag.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()

	log, err := logging.New(logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "coordinator:", err)
		os.Exit(2)
	}
	defer log.Sync()
	cfg.Logger = log

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := coordinator.Run(ctx, cfg); err != nil {
		log.Error("coordinator failed", zap.Error(err))
		fmt.Fprintln(os.Stderr, "coordinator:", err)
		os.Exit(1)
	}
}
