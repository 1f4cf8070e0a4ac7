package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIConventions: every binary answers -version; mixctl's usage mistakes exit 2;
// -o json writes 64-bit integers as numbers and names each mixture's domains; watch
// writes no escape codes into a pipe; a backup is private to its owner.
func TestCLIConventions(t *testing.T) {
	bin := binaries(t)
	for _, name := range []string{"coordinator", "worker", "mixctl", "mixbench", "loadbench"} {
		arg := "-version"
		if name == "mixctl" {
			arg = "--version"
		}
		out, err := exec.Command(filepath.Join(bin, name), arg).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "mixopt "+name+" ") {
			t.Errorf("%s %s: %v, %q", name, arg, err, out)
		}
	}
	c := newCluster(t, "10s")
	c.coordinator()
	c.worker("w1", "20000")
	c.createStudy(faultSpec(2, 1))
	c.wait("2m")
	for _, args := range [][]string{{"frobnicate"}, {"study"}, {"study", "frobnicate"}, {"trials"}, {"best", "1", "2"}, {"trial"}} {
		if code, out := mixctlCode(t, nil, append([]string{"--addr", c.addr}, args...)...); code != 2 {
			t.Errorf("mixctl %v: exit %d, want 2 (usage)\n%s", args, code, out)
		}
	}
	out, err := mixctl(t, c.addr, "trials", "1", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var trials struct {
		Trials []struct {
			ID              json.RawMessage    `json:"id"`
			StepsDone       json.RawMessage    `json:"steps_done"`
			MixtureByDomain map[string]float64 `json:"mixture_by_domain"`
		} `json:"trials"`
	}
	if err := json.Unmarshal([]byte(out), &trials); err != nil || len(trials.Trials) != 2 {
		t.Fatalf("trials -o json: %v, %d trials\n%s", err, len(trials.Trials), out)
	}
	for _, tr := range trials.Trials {
		var id, steps float64
		if json.Unmarshal(tr.ID, &id) != nil || json.Unmarshal(tr.StepsDone, &steps) != nil || steps != 1000 {
			t.Errorf("id %s and steps_done %s must be JSON numbers (steps 1000)", tr.ID, tr.StepsDone)
		}
		sum := 0.0
		for _, d := range []string{"web", "code", "books"} {
			sum += tr.MixtureByDomain[d]
		}
		if len(tr.MixtureByDomain) != 3 || sum < 0.999 || sum > 1.001 {
			t.Errorf("mixture_by_domain %v: want the 3 domains, summing to 1", tr.MixtureByDomain)
		}
	}
	out, err = mixctl(t, c.addr, "watch", "1", "--interval", "10ms")
	if err != nil || strings.Contains(out, "\033") || !strings.Contains(out, "e2e-faults") {
		t.Errorf("watch into a pipe: %v, escape codes or no study in %q", err, out)
	}
	backup := filepath.Join(c.dir, "backup.db")
	if _, err := mixctl(t, c.addr, "backup", "-f", backup); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode: %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}
