package gpuexec

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func templateSpec() TrainSpec {
	return TrainSpec{
		Python: "/opt/venv/bin/python3", DataDir: "/data/my corpus; rm -rf $(HOME)", Domains: []string{"web", "code"},
		Mixture: []float64{0.625, 0.375}, Preset: "1B", Scale: "1B-x", Steps: 2000, EvalEvery: 100, LogEvery: 100,
		Seed: 42, GPUs: []string{"GPU-aaaa", "GPU-bbbb"}, CheckpointDir: "/ckpt/study-1/trial-3",
	}
}

func TestCommandTemplateExpands(t *testing.T) {
	for _, form := range []string{
		`{python} -m torch.distributed.run --nproc_per_node={nproc} /opt/olmo/train.py --data={data_dir} ` +
			`--domains={domains} --weights={mixture} --model={preset} --run-name=mix-{scale}-{seed} --max-steps={steps} ` +
			`--horizon={schedule_steps} --eval-interval={eval_every} --save-folder={checkpoint_dir} --lr={lr} ` +
			`--devices={gpus} --device={device} --literal={{x}}`,
		`["{python}", "-m", "torch.distributed.run", "--nproc_per_node={nproc}", "/opt/olmo/train.py", "--data={data_dir}",
		  "--domains={domains}", "--weights={mixture}", "--model={preset}", "--run-name=mix-{scale}-{seed}", "--max-steps={steps}",
		  "--horizon={schedule_steps}", "--eval-interval={eval_every}", "--save-folder={checkpoint_dir}", "--lr={lr}",
		  "--devices={gpus}", "--device={device}", "--literal={{x}}"]`,
	} {
		tmpl, err := ParseCommandTemplate(form)
		if err != nil {
			t.Fatal(err)
		}
		spec := templateSpec()
		spec.Command = tmpl
		argv, err := spec.Argv()
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"/opt/venv/bin/python3", "-m", "torch.distributed.run", "--nproc_per_node=2", "/opt/olmo/train.py",
			// A value with spaces and shell syntax stays one argument, inert.
			"--data=/data/my corpus; rm -rf $(HOME)",
			"--domains=web,code", "--weights=0.625,0.375", "--model=1B", "--run-name=mix-1B-x-42", "--max-steps=2000",
			"--horizon=2000", "--eval-interval=100", "--save-folder=/ckpt/study-1/trial-3",
			// --lr={lr} is left out: no learning rate is set.
			"--devices=GPU-aaaa,GPU-bbbb", "--device=cuda", "--literal={x}"}
		if !slices.Equal(argv, want) {
			t.Fatalf("argv\n%q\nwant\n%q", argv, want)
		}
		if !tmpl.UsesPython() || tmpl.Name() != "train.py" {
			t.Errorf("uses python %v, name %q", tmpl.UsesPython(), tmpl.Name())
		}
		back, err := ParseCommandTemplate(tmpl.String())
		if err != nil || back.String() != tmpl.String() {
			t.Errorf("String %s does not parse back: %v", tmpl.String(), err)
		}
	}
}

// A CPU run without checkpoints drops the elements of empty placeholders; a template
// without {python} needs no interpreter.
func TestCommandTemplateDropsEmptyOptionals(t *testing.T) {
	tmpl, err := ParseCommandTemplate("/opt/bin/trainer --gpus={gpus} --ckpt {checkpoint_dir} --steps={steps} --device={device} --nproc={nproc}")
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.UsesPython() || tmpl.Name() != "trainer" {
		t.Errorf("uses python %v, name %q", tmpl.UsesPython(), tmpl.Name())
	}
	spec := templateSpec()
	spec.Command, spec.Python, spec.GPUs, spec.CheckpointDir = tmpl, "", nil, ""
	argv, err := spec.Argv()
	if err != nil {
		t.Fatal(err)
	}
	// "--ckpt" stays: only the element holding the empty placeholder goes.
	if want := []string{"/opt/bin/trainer", "--ckpt", "--steps=2000", "--device=cpu", "--nproc=1"}; !slices.Equal(argv, want) {
		t.Fatalf("argv %q, want %q", argv, want)
	}
	// The spec is still validated: a template is no way around the checks.
	spec.Mixture = []float64{0.5, 0.6}
	if _, err := spec.Argv(); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("bad mixture through a template: %v", err)
	}
}

func TestCommandTemplateRefuses(t *testing.T) {
	for name, tc := range map[string]struct{ tmpl, msg string }{
		"empty":                {"  ", "empty"},
		"unknown placeholder":  {"{python} train.py --x={secret}", "unknown placeholder {secret}"},
		"unclosed":             {"{python} train.py --x={steps", "unclosed"},
		"stray close":          {"{python} train.py --x=steps}", "without {"},
		"relative program":     {"trainer --steps={steps}", "absolute path"},
		"placeholder program":  {"{data_dir}/trainer", "absolute path"},
		"unclean program":      {"/opt/../bin/trainer", "absolute path"},
		"bad json":             {`["{python}", 3]`, "JSON array"},
		"too many arguments":   {"/bin/t" + strings.Repeat(" x", maxTemplateArgs), "at most"},
		"argument over bounds": {"/bin/t " + strings.Repeat("x", maxTemplateArgBytes+1), "longer than"},
	} {
		_, err := ParseCommandTemplate(tc.tmpl)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.msg)
		}
	}
	// {python} in a template makes the interpreter required.
	tmpl, err := ParseCommandTemplate("{python} /opt/t.py")
	if err != nil {
		t.Fatal(err)
	}
	spec := templateSpec()
	spec.Command, spec.Python = tmpl, ""
	if _, err := spec.Argv(); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "python") {
		t.Fatalf("template with {python} and no interpreter: %v", err)
	}
}

// Launch runs a template's command: the fake trainer reports the argv it was given.
func TestLaunchCommandTemplate(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseCommandTemplate(`["` + exe + `", "--run", "{scale}", "--mixture={mixture}", "--data={data_dir}", "--lr={lr}"]`)
	if err != nil {
		t.Fatal(err)
	}
	spec := fakeSpec(t, "ok")
	spec.Command, spec.Script, spec.Python, spec.Scale = tmpl, "", "", "small"
	run, err := Launch(context.Background(), spec, LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var start *StartInfo
	for ev := range run.Events() {
		if ev.Kind == KindStart {
			start = ev.Start
		}
	}
	if res := run.Wait(); res.Class != ClassSucceeded {
		t.Fatalf("class %s: %v", res.Class, res.Err)
	}
	var argv []string
	if err := unmarshalField(start.Config, "argv", &argv); err != nil {
		t.Fatal(err)
	}
	if want := []string{"--run", "small", "--mixture=0.25,0.75", "--data=" + spec.DataDir}; !slices.Equal(argv, want) {
		t.Fatalf("trainer got %q, want %q", argv, want)
	}
}

func FuzzCommandTemplate(f *testing.F) {
	for _, s := range []string{"{python} /t.py --steps={steps}", `["/bin/t", "{{x}}", "--d={data_dir}{gpus}"]`,
		"/bin/t {", "/bin/t }}", "{python}{python}", `["{python}"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := ParseCommandTemplate(s)
		if err != nil {
			return
		}
		spec := templateSpec()
		spec.Command = tmpl
		argv, err := spec.Argv()
		if err != nil {
			t.Fatalf("a parsed template failed to expand: %v", err)
		}
		if len(argv) == 0 || len(argv) > len(tmpl.args) || !cleanAbs(argv[0]) {
			t.Fatalf("template %s expanded to %q", tmpl, argv)
		}
	})
}
