package loadtest

import (
	"bufio"
	"strings"
	"testing"
)

func TestQuantileFromPrometheusBuckets(t *testing.T) {
	text := `# HELP x
mixopt_assignment_duration_seconds_bucket{le="0.001"} 0
mixopt_assignment_duration_seconds_bucket{le="0.002"} 50
mixopt_assignment_duration_seconds_bucket{le="0.004"} 90
mixopt_assignment_duration_seconds_bucket{le="0.008"} 100
mixopt_assignment_duration_seconds_bucket{le="+Inf"} 100
mixopt_assignment_duration_seconds_sum 0.3
`
	b, err := parseBuckets(bufio.NewScanner(strings.NewReader(text)), "mixopt_assignment_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ q, want float64 }{{0.5, 0.002}, {0.25, 0.0015}, {0.9, 0.004}, {0.99, 0.0076}} {
		if got := quantile(b, tc.q); got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if _, err := parseBuckets(bufio.NewScanner(strings.NewReader("other 1\n")), "mixopt_assignment_duration_seconds"); err == nil {
		t.Error("a scrape without the histogram was accepted")
	}
}
