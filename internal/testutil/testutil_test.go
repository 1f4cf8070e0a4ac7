package testutil

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestClockAdvances(t *testing.T) {
	c := NewClock()
	start := c.Now()
	c.Advance(90 * time.Second)
	if got := c.Now().Sub(start); got != 90*time.Second {
		t.Fatalf("advanced by %v, want 90s", got)
	}
	if !NewClock().Now().Equal(start) {
		t.Fatal("two new clocks start at different instants")
	}
}

// A store reopened at the same path holds what was written before.
func TestStoreReopens(t *testing.T) {
	path := StorePath(t)
	db := OpenStore(t, path)
	if err := db.Check(); err != nil {
		t.Fatalf("check of a new store: %v", err)
	}
	CheckAndClose(t, db)
	db = OpenStore(t, path)
	CheckAndClose(t, db)
	TempStore(t) // checked and closed by its cleanup
}

func TestServeReachesTheServer(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("x", healthpb.HealthCheckResponse_NOT_SERVING)
	s := Serve(t, func(srv *grpc.Server) { healthpb.RegisterHealthServer(srv, hs) }, nil)
	resp, err := healthpb.NewHealthClient(s.Conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "x"})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("status %v, want NOT_SERVING", resp.Status)
	}
}
