package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mixopt/mixopt/internal/metrics"
)

// assignmentQuantiles reads the coordinator's assignment-latency histogram from /metrics
// and returns its median and 99th percentile.
func assignmentQuantiles(ctx context.Context, httpAddr string) (p50, p99 time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("read coordinator metrics: %w", err)
	}
	defer resp.Body.Close()
	buckets, err := parseBuckets(bufio.NewScanner(resp.Body), metrics.NameAssignment)
	if err != nil {
		return 0, 0, err
	}
	return seconds(quantile(buckets, 0.5)), seconds(quantile(buckets, 0.99)), nil
}

type bucket struct {
	le    float64
	count float64
}

// parseBuckets collects the cumulative buckets of an unlabelled histogram from the
// Prometheus text format.
func parseBuckets(sc *bufio.Scanner, name string) ([]bucket, error) {
	prefix := name + `_bucket{le="`
	var out []bucket
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		rest := strings.TrimPrefix(line, prefix)
		leStr, countStr, ok := strings.Cut(rest, `"} `)
		if !ok {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		le, err := strconv.ParseFloat(leStr, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		n, err := strconv.ParseFloat(countStr, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out = append(out, bucket{le, n})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s histogram in the coordinator's metrics", name)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].le < out[j].le })
	return out, sc.Err()
}

// quantile interpolates linearly within the bucket holding the q-th observation, as
// Prometheus's histogram_quantile does; the open last bucket answers its lower bound.
func quantile(buckets []bucket, q float64) float64 {
	total := buckets[len(buckets)-1].count
	if total == 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range buckets {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return lower
			}
			if b.count == below {
				return b.le
			}
			return lower + (b.le-lower)*(rank-below)/(b.count-below)
		}
		lower, below = b.le, b.count
	}
	return lower
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
