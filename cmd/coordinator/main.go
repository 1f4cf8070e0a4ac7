// Command coordinator serves mixopt's WorkerService and ControlService over gRPC, keeping
// all state in one bbolt file, with the dashboard and Prometheus metrics over HTTP.
//
// Settings come from the defaults, then a YAML file (-config), then flags: a flag given
// on the command line wins. `coordinator config default` prints the default file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/mixopt/mixopt/internal/buildinfo"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/mixopt/mixopt/internal/coordinator"
	"github.com/mixopt/mixopt/internal/logging"
	"github.com/mixopt/mixopt/internal/store"
)

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "probe" {
		os.Exit(runProbe(os.Args[2:]))
	}
	if len(os.Args) >= 3 && os.Args[1] == "config" && os.Args[2] == "default" {
		out, err := coordinator.DefaultFileConfig().YAML()
		if err != nil {
			fail(err)
		}
		os.Stdout.Write(out)
		return
	}
	fc, err := fileConfig(os.Args[1:])
	if err != nil {
		fail(err)
	}
	var cfg coordinator.Config
	var configPath, logLevel string
	fs := flag.NewFlagSet("coordinator", flag.ExitOnError)
	fs.StringVar(&configPath, "config", "", "YAML configuration file (flags override it); see `coordinator config default`")
	fs.StringVar(&cfg.Listen, "listen", fc.Listen, "gRPC TCP address (port 0: any free port)")
	fs.StringVar(&cfg.HTTPListen, "http-listen", fc.HTTPListen, `HTTP address of the dashboard and /metrics ("": off)`)
	fs.StringVar(&cfg.AddrFile, "addr-file", "", "write the gRPC address actually served on to this file")
	fs.StringVar(&cfg.HTTPAddrFile, "http-addr-file", "", "write the HTTP address actually served on to this file")
	fs.StringVar(&cfg.DBPath, "db", fc.DB, "bbolt database file holding all state")
	fs.BoolVar(&cfg.CreateDB, "init", false, "create the -db file when it does not exist (without it, a missing file is an error)")
	fs.DurationVar(&cfg.DBOpenTimeout, "db-timeout", time.Duration(fc.DBTimeout), "wait this long for another process's lock on the database")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", time.Duration(fc.StopTimeout), "bound on the graceful stop")
	fs.DurationVar(&cfg.Scheduler.LeaseTTL, "lease-ttl", time.Duration(fc.LeaseTTL), "trial lease time-to-live without heartbeats")
	fs.DurationVar(&cfg.Scheduler.HeartbeatInterval, "heartbeat", time.Duration(fc.Heartbeat), "heartbeat interval told to workers (0: lease-ttl/6)")
	fs.DurationVar(&cfg.Scheduler.RestartGrace, "restart-grace", time.Duration(fc.RestartGrace), "extra lease time after a restart for workers to reattach")
	var maxAttempts int
	fs.IntVar(&maxAttempts, "max-attempts", int(fc.MaxAttempts), "attempts of a trial before it is lost (delivery limit)")
	fs.StringVar(&cfg.TokensFile, "tokens", fc.TokensFile, "bearer tokens with roles (docs/security.md); empty: no authentication")
	fs.StringVar(&cfg.TLSCert, "tls-cert", fc.TLSCert, "TLS certificate file")
	fs.StringVar(&cfg.TLSKey, "tls-key", fc.TLSKey, "TLS private key file")
	fs.StringVar(&cfg.TLSClientCA, "tls-client-ca", fc.TLSClientCA, "CA of client certificates: makes TLS mutual")
	fs.IntVar(&cfg.MaxMessageBytes, "max-message-bytes", fc.MaxMessageBytes, "largest gRPC message accepted")
	fs.Float64Var(&cfg.RegisterRate, "register-rate", fc.RegisterRate, "worker registrations accepted per second")
	fs.IntVar(&cfg.RegisterBurst, "register-burst", fc.RegisterBurst, "burst of worker registrations accepted")
	fs.StringVar(&logLevel, "log-level", fc.LogLevel, "log level: debug, info, warn, error")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until the coordinator stops")
	showVersion := fs.Bool("version", false, "print the version and exit")
	verify := fs.Bool("verify", false, "before serving, check every page and record of the database (bbolt's page structure, each record's checksum, the store's invariants) and refuse to start if it is damaged; reads the whole file")
	fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(buildinfo.Line("coordinator"))
		return
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	cfg.Scheduler.MaxAttempts = int32(maxAttempts)

	log, err := logging.New(logLevel)
	if err != nil {
		fail(err)
	}
	defer log.Sync()
	cfg.Logger = log
	if *verify {
		if err := verifyStore(cfg.DBPath, cfg.DBOpenTimeout, log); err != nil {
			log.Error("database damaged; not serving", zap.Error(err))
			fail(err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// SIGHUP reloads the tokens file (docs/security.md: rotation).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	cfg.ReloadTokens = reload
	if err := coordinator.Run(ctx, cfg); err != nil {
		log.Error("coordinator failed", zap.Error(err))
		fail(err)
	}
}

// fileConfig finds -config among the arguments and loads it, so that its values become the
// flags' defaults and flags given on the command line override them.
func fileConfig(args []string) (coordinator.FileConfig, error) {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", "", "")
	for len(args) > 0 {
		err := fs.Parse(args)
		if err == nil || errors.Is(err, flag.ErrHelp) {
			break
		}
		args = args[1:] // skip a flag this pre-pass does not know
	}
	if *path == "" {
		return coordinator.DefaultFileConfig(), nil
	}
	return coordinator.LoadFileConfig(*path)
}

// verifyStore runs the store's full check (store.DB.Check) on the database before the
// coordinator opens it to serve. Start-up itself reads only what it needs, so that it
// does not grow with history; this is the explicit check. A missing file has nothing
// to check (Run decides what to do about it).
func verifyStore(path string, timeout time.Duration, log *zap.Logger) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	start := time.Now()
	db, err := store.Open(path, store.Options{Timeout: timeout})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		return err
	}
	log.Info("database verified", zap.String("db", path), zap.Duration("took", time.Since(start)))
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "coordinator:", err)
	os.Exit(1)
}
