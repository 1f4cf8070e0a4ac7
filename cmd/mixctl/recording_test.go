package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runMixctl(args ...string) (string, int) {
	var out bytes.Buffer
	cmd := newRootCmd(&out)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		return out.String() + errorMessage(err), exitCode(err)
	}
	return out.String(), 0
}

// from-csv writes a recording that check accepts; check names the line and field of a
// broken line and exits non-zero.
func TestRecordingFromCSVAndCheck(t *testing.T) {
	dir := t.TempDir()
	csvPath, rec := filepath.Join(dir, "runs.csv"), filepath.Join(dir, "runs.jsonl")
	os.WriteFile(csvPath, []byte("scale,params,steps,web,code,train_loss,web_ce\n1M,1e6,100,0.3,0.7,3.1,3.0\n1M,1e6,100,0.6,0.4,3.3,3.2\n"), 0o644)
	out, code := runMixctl("recording", "from-csv", csvPath, "-f", rec, "--domains", "web,code", "--metrics", "web_ce",
		"--tokens-per-step", "1000", "--flops-per-second", "1e12")
	if code != 0 || !strings.Contains(out, "wrote 2 runs") {
		t.Fatalf("from-csv: exit %d: %s", code, out)
	}
	if out, code = runMixctl("recording", "check", rec); code != 0 || !strings.Contains(out, "2 runs load, 0 errors") {
		t.Fatalf("check of the converted recording: exit %d: %s", code, out)
	}
	b, _ := os.ReadFile(rec)
	bad := strings.Replace(string(b), `"train_loss":3.3`, `"train_loss":NaN`, 1)
	os.WriteFile(rec, []byte(bad), 0o644)
	out, code = runMixctl("recording", "check", rec)
	if code != 1 || !strings.Contains(out, "line 2: error: train_loss: NaN is not a JSON number") {
		t.Fatalf("check of a NaN line: exit %d: %s", code, out)
	}
	if _, code = runMixctl("recording", "from-csv", csvPath); code != 2 {
		t.Fatalf("from-csv without -f: exit %d, want 2", code)
	}
}
