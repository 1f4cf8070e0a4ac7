package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// chromium finds Debian's chromium (or a Chrome); CI installs it in .ci/run, so a missing
// browser fails the test rather than skipping it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium: apt-get install -y --no-install-recommends chromium (see .ci/run)")
	return ""
}

// runChromium runs headless chromium with its own profile; the context only bounds a hung
// browser, it asserts nothing about speed.
func runChromium(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000",
	}
	cmd := exec.CommandContext(ctx, chromium(t), append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, tail(stderr.String(), 3000))
	}
	return stdout.Bytes()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestDashboardRendersInChromium(t *testing.T) {
	src := newFakeSource()
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()
	url := srv.URL + "/#study=1"

	dom := string(runChromium(t, "--dump-dom", url))
	if !strings.Contains(dom, `data-ready="1"`) {
		t.Fatalf("page never finished rendering:\n%s", tail(dom, 4000))
	}
	if m := regexp.MustCompile(`(?s)<div id="error"[^>]*>(.*?)</div>`).FindStringSubmatch(dom); m == nil || strings.TrimSpace(m[1]) != "" {
		t.Fatalf("error banner: %q", m)
	}
	count := func(s string) int { return strings.Count(dom, s) }
	checks := []struct {
		what      string
		got, want int
	}{
		{"study rows", count("<tr data-study-id="), 2},
		{"trial rows", count("<tr data-trial-id="), simTrials},
		{"worker rows", count("<tr data-worker-id="), 3},
		{"loss curves", count(`class="curve"`), simWithPts},
		{"curve charts (one per scale)", count(`data-chart="curves-`), 3},
		{"progress chart", count(`data-chart="progress"`), 1},
		{"recommended mixture bars", count(`class="rec-bar"`), 5},
		{"mini mixture bars", count(`class="mix"`), simTrials},
		{"spend by scale line", count(`data-spend="1"`), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %d in the DOM, want %d", c.what, c.got, c.want)
		}
	}
	for _, want := range []string{
		"Study 1: slimpajama-5dom",
		`<span id="rec-value" class="value">` + strconv.FormatFloat(simRec.Value, 'f', 4, 64) + "</span>",
		fmt.Sprintf("90%% interval [%.4f, %.4f]", simRec.Lower, simRec.Upper),
		`<p id="rec-label" class="warn">` + simRec.Label + "</p>",
		"oom: CUDA out of memory at step 1250",
		"gpu-node-02",
		"smoke &lt;b&gt;test&lt;/b&gt;", // a name with markup shows as text
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %q", want)
		}
	}
	// Every scale's chart has its trials' curves: count paths inside each chart.
	for _, sc := range simScales {
		want := 0
		for _, tr := range src.trials[1] {
			if tr.Scale == sc.Name && len(src.points[tr.Id]) > 0 {
				want++
			}
		}
		re := regexp.MustCompile(`(?s)data-chart="curves-` + sc.Name + `".*?</svg>`)
		if got := strings.Count(re.FindString(dom), `class="curve"`); got != want {
			t.Errorf("scale %s: %d curves drawn, want %d", sc.Name, got, want)
		}
	}

	shot := filepath.Join(t.TempDir(), "dashboard.png")
	runChromium(t, "--screenshot="+shot, "--window-size=1280,900", url)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
		t.Errorf("screenshot is %v, want 1280x900", b)
	}
	// A blank or error page has a handful of colours; charts and badges have many.
	colours := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[r>>11<<10|g>>11<<5|bl>>11] = true
		}
	}
	if len(colours) < 50 {
		t.Errorf("screenshot has %d colours: looks blank", len(colours))
	}
	t.Logf("screenshot: %s", shot)
	// DASHBOARD_SCREENSHOT keeps a copy outside the test's temporary directory, to look at.
	if keep := os.Getenv("DASHBOARD_SCREENSHOT"); keep != "" {
		data, err := os.ReadFile(shot)
		if err == nil {
			err = os.WriteFile(keep, data, 0o644)
		}
		if err != nil {
			t.Errorf("keep screenshot: %v", err)
		}
	}
}

// An observed value (a random-policy study's best, a partial curve) is shown as observed,
// with the fidelity it was observed at, and without an interval.
func TestDashboardShowsObservedValuesWithoutInterval(t *testing.T) {
	src := newFakeSource()
	src.studies[0].Recommendation = &pb.Recommendation{StudyId: 1, Mixture: []float64{0.2, 0.2, 0.2, 0.2, 0.2},
		Value: 3.25, Lower: 3.25, Upper: 3.25, Basis: "best observed at the highest fidelity so far", Trials: 3,
		ValueObserved: true, ObservedScale: "s20m", ObservedSteps: 200,
		Label: "observed at scale s20m after 200 steps, not at the target (s150m, 20000 steps): no trial there has finished"}
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()
	dom := string(runChromium(t, "--dump-dom", srv.URL+"/#study=1"))
	if !strings.Contains(dom, `data-ready="1"`) {
		t.Fatalf("page never finished rendering:\n%s", tail(dom, 4000))
	}
	for _, want := range []string{
		`<p id="rec-label" class="warn">` + src.studies[0].Recommendation.Label + "</p>",
		"3.2500 observed at s20m/200", // the studies table
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %q", want)
		}
	}
	if strings.Contains(dom, "rec-interval") || strings.Contains(dom, "90% interval") {
		t.Errorf("an observed value is shown with an interval")
	}
}
