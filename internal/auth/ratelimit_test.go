package auth

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func TestLimiter(t *testing.T) {
	clk := testutil.NewClock()
	l := NewLimiter(2, 3, clk.Now) // 2 per second, burst 3
	for i := range 3 {
		if !l.Allow() {
			t.Fatalf("burst call %d refused", i)
		}
	}
	if l.Allow() {
		t.Fatal("4th call in the same instant allowed")
	}
	clk.Advance(500 * time.Millisecond) // refills one token
	if !l.Allow() || l.Allow() {
		t.Fatal("want exactly one call after half a second")
	}
	clk.Advance(time.Hour) // refills, capped at burst
	n := 0
	for l.Allow() {
		n++
	}
	if n != 3 {
		t.Fatalf("after a long idle %d calls allowed, want burst 3", n)
	}
	clk.Advance(-time.Minute) // a clock stepping back mints nothing
	if l.Allow() {
		t.Fatal("allowed after the clock stepped back")
	}
	clk.Advance(time.Minute + 500*time.Millisecond)
	if !l.Allow() {
		t.Fatal("refill after the clock caught up")
	}
}

func TestRateLimitUnary(t *testing.T) {
	clk := testutil.NewClock()
	ic := RateLimitUnary(NewLimiter(1, 1, clk.Now), pb.WorkerService_Register_FullMethodName)
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	call := func(method string) codes.Code {
		_, err := ic(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: method}, ok)
		return status.Code(err)
	}
	if c := call(pb.WorkerService_Register_FullMethodName); c != codes.OK {
		t.Fatalf("first register: %v", c)
	}
	if c := call(pb.WorkerService_Register_FullMethodName); c != codes.ResourceExhausted {
		t.Fatalf("second register: %v, want ResourceExhausted", c)
	}
	if c := call(pb.WorkerService_Heartbeat_FullMethodName); c != codes.OK {
		t.Fatalf("heartbeat is not limited: %v", c)
	}
}
