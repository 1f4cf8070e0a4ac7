package gpuexec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// fakePython writes an executable that answers the probe with body (one JSON line), and
// fails unless it is called as the probe calls it: python -c SCRIPT.
func fakePython(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "python3")
	script := "#!/bin/sh\n" +
		"[ \"$1\" = -c ] && [ -n \"$2\" ] || { echo \"called as $0 $*\" >&2; exit 2; }\n" +
		"echo 'a sitecustomize printing first'\n" +
		"cat <<'EOF'\n" + body + "\nEOF\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

const (
	probeWithTorch = `{"v": 1, "python": "3.11.2", "torch": "2.4.0+cu121", "cuda": "12.1", "cuda_available": true, ` +
		`"devices": ["NVIDIA H200", "NVIDIA H200"], "compile": true}`
	probeNoTorch = `{"v": 1, "python": "3.12.1", "torch_error": "ModuleNotFoundError: No module named 'torch'"}`
)

func TestProbeInterpreter(t *testing.T) {
	ctx := context.Background()
	in, err := ProbeInterpreter(ctx, fakePython(t, t.TempDir(), probeWithTorch), ProbeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if in.PythonVersion != "3.11.2" || in.TorchVersion != "2.4.0+cu121" || in.CUDAVersion != "12.1" || !in.CUDAAvailable ||
		!slices.Equal(in.Devices, []string{"NVIDIA H200", "NVIDIA H200"}) || !in.CompileAvailable || in.RequireTorch() != nil {
		t.Fatalf("probe %+v", in)
	}
	if got, want := in.Summary(), "python 3.11.2, torch 2.4.0+cu121, cuda 12.1 (2 devices), compile"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}

	path := fakePython(t, t.TempDir(), probeNoTorch)
	in, err = ProbeInterpreter(ctx, path, ProbeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = in.RequireTorch()
	if in.HasTorch() || !errors.Is(err, ErrNoTorch) || !strings.Contains(err.Error(), path) ||
		!strings.Contains(err.Error(), "No module named 'torch'") {
		t.Fatalf("probe %+v, RequireTorch %v: want ErrNoTorch naming %s and the import error", in, err, path)
	}
	if in.Summary() != "python 3.12.1, no torch" {
		t.Errorf("summary %q", in.Summary())
	}
}

func TestProbeInterpreterRefusesBadOutput(t *testing.T) {
	for name, body := range map[string]string{
		"not json":        "Python 3.11.2",
		"no version":      `{"python": "3.11"}`,
		"no python":       `{"v": 1}`,
		"multiline torch": `{"v": 1, "python": "3.11", "torch": "2.4\n0"}`,
		"too many gpus":   `{"v": 1, "python": "3.11", "torch": "2.4", "devices": [` + strings.Repeat(`"x",`, 300) + `"x"]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if in, err := ProbeInterpreter(context.Background(), fakePython(t, t.TempDir(), body), ProbeOptions{}); err == nil {
				t.Fatalf("accepted as %+v", in)
			}
		})
	}
	if _, err := ProbeInterpreter(context.Background(), "python3", ProbeOptions{}); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative path: %v", err)
	}
	dir := t.TempDir()
	failing := filepath.Join(dir, "python3")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho 'libpython3.11.so: cannot open shared object' >&2\nexit 127\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ProbeInterpreter(context.Background(), failing, ProbeOptions{}); err == nil || !strings.Contains(err.Error(), "cannot open shared object") {
		t.Errorf("failing interpreter: %v, want its stderr in the error", err)
	}
}

// The default interpreter is the python3 on PATH when it has torch, else the fallback.
func TestFindInterpreter(t *testing.T) {
	withTorch := fakePython(t, t.TempDir(), probeWithTorch)
	noTorch := fakePython(t, t.TempDir(), probeNoTorch)
	on := func(p string) func(string) (string, error) { return func(string) (string, error) { return p, nil } }
	ctx := context.Background()
	in, err := FindInterpreter(ctx, ProbeOptions{LookPath: on(withTorch), Fallback: noTorch})
	if err != nil || in.Path != withTorch {
		t.Errorf("PATH's python3 has torch: picked %q (%v), want %s", in.Path, err, withTorch)
	}
	in, err = FindInterpreter(ctx, ProbeOptions{LookPath: on(noTorch), Fallback: withTorch})
	if err != nil || in.Path != withTorch {
		t.Errorf("PATH's python3 lacks torch: picked %q (%v), want the fallback %s", in.Path, err, withTorch)
	}
	notFound := func(string) (string, error) { return "", os.ErrNotExist }
	in, err = FindInterpreter(ctx, ProbeOptions{LookPath: notFound, Fallback: noTorch})
	if err != nil || in.Path != noTorch || in.HasTorch() {
		t.Errorf("no python3 on PATH: %+v (%v), want the fallback without torch", in, err)
	}
}

// The probe script itself, run by the interpreter CI installs torch for.
func TestProbeRealPython(t *testing.T) {
	python := realPython(t)
	abs, err := filepath.Abs(python)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ProbeInterpreter(context.Background(), abs, ProbeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^3\.\d+\.\d+`).MatchString(in.PythonVersion) || !regexp.MustCompile(`^\d+\.\d+`).MatchString(in.TorchVersion) {
		t.Fatalf("probe %+v", in)
	}
	// torch.compile arrived in 2.0; Debian's 1.13 must say it has none, and why.
	if strings.HasPrefix(in.TorchVersion, "1.") && (in.CompileAvailable || !strings.Contains(in.CompileError, "no torch.compile")) {
		t.Errorf("torch %s: compile %v (%q)", in.TorchVersion, in.CompileAvailable, in.CompileError)
	}
	if in.CUDAAvailable != (len(in.Devices) > 0) {
		t.Errorf("cuda available %v with devices %v", in.CUDAAvailable, in.Devices)
	}
	t.Logf("%s: %s", abs, in.Summary())
}

func FuzzParseProbe(f *testing.F) {
	for _, s := range []string{probeWithTorch, probeNoTorch, "junk\n" + probeWithTorch, `{"v": 1, "python": "3", "devices": null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		in, err := parseProbe("/usr/bin/python3", out)
		if err != nil {
			return
		}
		if in.PythonVersion == "" || len(in.Devices) > maxProbeDevices || len(in.TorchError) > maxProbeString+len("…") ||
			(in.CompileAvailable && !in.HasTorch()) {
			t.Fatalf("accepted %+v", in)
		}
	})
}
