package auth

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limiter is a token bucket: it holds up to burst tokens and refills at rate per second;
// each allowed event takes one. Safe for concurrent use. (golang.org/x/time/rate is not in
// the module graph, and this is all that is needed.)
type Limiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewLimiter returns a full bucket. now is the clock (nil: time.Now); tests pass a fake.
func NewLimiter(ratePerSecond float64, burst int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	if burst < 1 {
		burst = 1
	}
	return &Limiter{rate: ratePerSecond, burst: float64(burst), now: now, tokens: float64(burst), last: now()}
}

// Allow takes a token if one is available.
func (l *Limiter) Allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if el := now.Sub(l.last).Seconds(); el > 0 {
		l.tokens = min(l.burst, l.tokens+el*l.rate)
	}
	// A clock that steps backwards must not mint tokens later: keep the newest time.
	if now.After(l.last) {
		l.last = now
	}
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// RateLimitUnary answers ResourceExhausted for calls to methods once l is empty; other
// methods pass. Put it after the authenticator so that unauthenticated callers cannot use
// up the bucket.
func RateLimitUnary(l *Limiter, methods ...string) grpc.UnaryServerInterceptor {
	limited := map[string]bool{}
	for _, m := range methods {
		limited[m] = true
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if limited[info.FullMethod] && !l.Allow() {
			return nil, status.Errorf(codes.ResourceExhausted, "%s: rate limit reached; retry later", info.FullMethod)
		}
		return handler(ctx, req)
	}
}
