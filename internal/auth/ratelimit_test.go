package auth

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestLimiter(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := NewLimiter(2, 3, clk.now) // 2 per second, burst 3
	for i := range 3 {
		if !l.Allow() {
			t.Fatalf("burst call %d refused", i)
		}
	}
	if l.Allow() {
		t.Fatal("4th call in the same instant allowed")
	}
	clk.t = clk.t.Add(500 * time.Millisecond) // refills one token
	if !l.Allow() || l.Allow() {
		t.Fatal("want exactly one call after half a second")
	}
	clk.t = clk.t.Add(time.Hour) // refills, capped at burst
	n := 0
	for l.Allow() {
		n++
	}
	if n != 3 {
		t.Fatalf("after a long idle %d calls allowed, want burst 3", n)
	}
	clk.t = clk.t.Add(-time.Minute) // a clock stepping back mints nothing
	if l.Allow() {
		t.Fatal("allowed after the clock stepped back")
	}
	clk.t = clk.t.Add(time.Minute + 500*time.Millisecond)
	if !l.Allow() {
		t.Fatal("refill after the clock caught up")
	}
}

func TestRateLimitUnary(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	ic := RateLimitUnary(NewLimiter(1, 1, clk.now), pb.WorkerService_Register_FullMethodName)
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
