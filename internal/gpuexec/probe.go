package gpuexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Interpreter is what a Python environment offers for training, as [ProbeInterpreter]
// found it.
type Interpreter struct {
	// Path is the absolute path probed.
	Path          string
	PythonVersion string
	// TorchVersion is "" when torch cannot be imported; TorchError then says why.
	TorchVersion string
	TorchError   string
	// CUDAVersion is the CUDA torch was built with ("" for a CPU build); CUDAAvailable
	// whether it sees a device, and Devices the names of those it sees.
	CUDAVersion   string
	CUDAAvailable bool
	Devices       []string
	// CompileAvailable: torch.compile exists and its backend can run here (triton for
	// CUDA, a C++ compiler for the CPU); CompileError says why not.
	CompileAvailable bool
	CompileError     string
}

// HasTorch reports whether torch imports.
func (in Interpreter) HasTorch() bool { return in.TorchVersion != "" }

// ErrNoTorch means the interpreter cannot import torch, which train.py needs.
var ErrNoTorch = errors.New("python has no torch")

// RequireTorch returns an error wrapping [ErrNoTorch] that names the interpreter and why
// torch did not import, or nil when it did.
func (in Interpreter) RequireTorch() error {
	if in.HasTorch() {
		return nil
	}
	return fmt.Errorf("%s (python %s) cannot import torch (%s); install PyTorch for it "+
		"(Debian: apt-get install python3-torch) or name an interpreter that has it: %w",
		in.Path, in.PythonVersion, in.TorchError, ErrNoTorch)
}

// Summary is one line for logs and tables: "python 3.11.2, torch 2.4.0+cu121, cuda 12.1 (2
// devices), compile".
func (in Interpreter) Summary() string {
	parts := []string{"python " + in.PythonVersion}
	if !in.HasTorch() {
		return strings.Join(append(parts, "no torch"), ", ")
	}
	parts = append(parts, "torch "+in.TorchVersion)
	switch {
	case in.CUDAVersion == "":
		parts = append(parts, "cpu build")
	case in.CUDAAvailable:
		parts = append(parts, fmt.Sprintf("cuda %s (%d devices)", in.CUDAVersion, len(in.Devices)))
	default:
		parts = append(parts, "cuda "+in.CUDAVersion+" (no device)")
	}
	if in.CompileAvailable {
		parts = append(parts, "compile")
	} else {
		parts = append(parts, "no compile")
	}
	return strings.Join(parts, ", ")
}

// probeScript prints one JSON object describing the interpreter. It imports nothing the
// standard library lacks besides torch (and triton for compile on CUDA), and never fails:
// what is missing is reported.
const probeScript = `
import json, platform, shutil, sys
out = {"v": 1, "python": platform.python_version()}
try:
    import torch
except Exception as e:
    out["torch_error"] = "%s: %s" % (type(e).__name__, e)
else:
    out["torch"] = str(torch.__version__)
    out["cuda"] = str(torch.version.cuda or "")
    try:
        avail = bool(torch.cuda.is_available())
        out["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if avail else []
    except Exception as e:
        avail = False
        out["cuda_error"] = "%s: %s" % (type(e).__name__, e)
    out["cuda_available"] = avail
    why = ""
    if not hasattr(torch, "compile"):
        why = "torch %s has no torch.compile (needs torch >= 2.0)" % torch.__version__
    else:
        try:
            import torch._dynamo
        except Exception as e:
            why = "torch._dynamo: %s: %s" % (type(e).__name__, e)
        if not why and avail:
            try:
                import triton
            except Exception as e:
                why = "triton: %s: %s" % (type(e).__name__, e)
        if not why and not avail and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            why = "no C++ compiler for the CPU backend"
    out["compile"] = not why
    if why:
        out["compile_error"] = why
sys.stdout.write(json.dumps(out) + "\n")
`

// Bounds on what a probe may report; an interpreter printing more is refused.
const (
	maxProbeOutput  = 64 << 10
	maxProbeDevices = 256
	maxProbeString  = 512
)

// ProbeOptions configure [ProbeInterpreter] and [FindInterpreter].
type ProbeOptions struct {
	// Timeout bounds one probe (60s): importing torch and initialising CUDA take seconds.
	Timeout time.Duration
	// Environ is the probe's environment (the worker's when nil).
	Environ []string
	// LookPath finds "python3" on PATH (exec.LookPath when nil).
	LookPath func(string) (string, error)
	// Fallback is the interpreter used when the python3 on PATH lacks torch
	// ([FallbackPython] when empty).
	Fallback string
}

// FallbackPython is the interpreter tried when the python3 on PATH has no torch: Debian's,
// where apt-get install python3-torch puts torch.
const FallbackPython = "/usr/bin/python3"

// probeWire is the probe script's output.
type probeWire struct {
	V             int      `json:"v"`
	Python        string   `json:"python"`
	Torch         string   `json:"torch"`
	TorchError    string   `json:"torch_error"`
	CUDA          string   `json:"cuda"`
	CUDAAvailable bool     `json:"cuda_available"`
	CUDAError     string   `json:"cuda_error"`
	Devices       []string `json:"devices"`
	Compile       bool     `json:"compile"`
	CompileError  string   `json:"compile_error"`
}

// ProbeInterpreter runs python with a probe script (no shell) and reports what it offers.
// An interpreter without torch is not an error here; see [Interpreter.RequireTorch].
func ProbeInterpreter(ctx context.Context, python string, opts ProbeOptions) (Interpreter, error) {
	if !cleanAbs(python) {
		return Interpreter{}, fmt.Errorf("probe python: path %q must be absolute and clean", python)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", probeScript)
	cmd.Env = opts.Environ
	stdout := &tailBuffer{max: maxProbeOutput + 1}
	stderr := &tailBuffer{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return Interpreter{}, fmt.Errorf("probe python %s: %w: %s", python, err, lastLine(stderr.String()))
	}
	out := stdout.String()
	if len(out) > maxProbeOutput {
		return Interpreter{}, fmt.Errorf("probe python %s: more than %d bytes of output", python, maxProbeOutput)
	}
	return parseProbe(python, []byte(out))
}

func parseProbe(python string, out []byte) (Interpreter, error) {
	bad := func(format string, args ...any) (Interpreter, error) {
		return Interpreter{}, fmt.Errorf("probe python %s: %s", python, fmt.Sprintf(format, args...))
	}
	// The last line is the probe's: a sitecustomize may print before it.
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	var w probeWire
	if err := json.Unmarshal(lines[len(lines)-1], &w); err != nil {
		return bad("output is not the probe's JSON: %v", err)
	}
	if w.V != 1 || w.Python == "" {
		return bad("output lacks the probe's version or the python version")
	}
	if len(w.Devices) > maxProbeDevices {
		return bad("%d devices, at most %d", len(w.Devices), maxProbeDevices)
	}
	for name, s := range map[string]string{"python": w.Python, "torch": w.Torch, "cuda": w.CUDA} {
		if len(s) > 64 || strings.ContainsAny(s, "\x00\n") {
			return bad("%s version %q is not a version", name, s)
		}
	}
	clip := func(s string) string { return TruncateUTF8(strings.TrimSpace(s), maxProbeString) }
	in := Interpreter{
		Path: python, PythonVersion: w.Python, TorchVersion: w.Torch, TorchError: clip(w.TorchError),
		CUDAVersion: w.CUDA, CUDAAvailable: w.CUDAAvailable,
		CompileAvailable: w.Compile && w.Torch != "", CompileError: clip(w.CompileError),
	}
	for _, d := range w.Devices {
		in.Devices = append(in.Devices, clip(d))
	}
	if w.CUDAError != "" && in.CompileError == "" && !in.CUDAAvailable && in.CUDAVersion != "" {
		in.CompileError = clip("cuda: " + w.CUDAError)
	}
	if in.Devices == nil {
		in.Devices = []string{}
	}
	return in, nil
}

// FindInterpreter picks the training interpreter when none is named: the python3 on PATH
// when it has torch, else [FallbackPython] (what it has, torch or not, is in the result).
func FindInterpreter(ctx context.Context, opts ProbeOptions) (Interpreter, error) {
	look := opts.LookPath
	if look == nil {
		look = exec.LookPath
	}
	fallback := opts.Fallback
	if fallback == "" {
		fallback = FallbackPython
	}
	var onPath error
	if p, err := look("python3"); err == nil {
		if abs, err := filepath.Abs(p); err == nil && abs != fallback {
			in, err := ProbeInterpreter(ctx, abs, opts)
			if err == nil && in.HasTorch() {
				return in, nil
			}
			onPath = err
		}
	}
	in, err := ProbeInterpreter(ctx, fallback, opts)
	if err != nil {
		return Interpreter{}, errors.Join(err, onPath)
	}
	return in, nil
}
