// Command mixbench runs the optimiser benchmark of the project's BENCHMARK.md guide: every
// policy on every world (the paper's data model, recorded pools) and objective, over
// seeds, noise levels and parallelism, and prints regret, cost to reach, speedups and the
// headline with its aggregate; --out gets the JSON numbers and plots.
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/mixopt/mixopt/internal/buildinfo"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/mixopt/mixopt/internal/benchmark"
	"github.com/mixopt/mixopt/internal/bo"
	"github.com/mixopt/mixopt/internal/sim"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mixbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mixbench", flag.ContinueOnError)
	data := fs.String("data", "", "data model JSON (default: DIR/slimpajama-datamodel-v1.json of -shared)")
	shared := fs.String("shared", "", "the shared benchmark data folder (default: ../shared/benchmarks from the repository root)")
	var worlds worldFlag
	fs.Var(&worlds, "world", "world to run (repeatable): "+strings.Join(benchmark.WorldNames(), ", ")+", or all (every named one); default datamodel")
	objectives := fs.String("objectives", "", "comma-separated objectives (default: every objective of each world; *_acc* metrics are maximised)")
	objective := fs.String("objective", "", "one objective (the same as -objectives with one name)")
	policies := fs.String("policies", "random,uniform,regmix,mfbo,mfms", "comma-separated policies")
	headline := fs.String("headline", "mfms", "policy whose headline (speedup over the best baseline) is printed")
	seeds := fs.Int("seeds", 20, "seeds per policy and setting")
	seedBase := fs.Uint64("seed-base", 1, "first seed")
	budget := fs.Float64("budget", 30, "budget in target-run equivalents")
	noise := fs.String("noise", "0,0.01", "comma-separated noise standard deviations added to each observed point")
	parallel := fs.String("parallel", "1,8", "comma-separated numbers of trials in parallel")
	fstar := fs.Int("fstar-samples", 100000, "Dirichlet(1) samples of the dense search for f*")
	maxTrials := fs.Int("max-trials", 1000, "cap on the trials of one run (regmix sweeps up to 512 proxy runs)")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "runs at once")
	out := fs.String("out", "", "directory for results.json and the plots (none when empty)")
	quiet := fs.Bool("quiet", false, "do not print progress per run")
	traceDir := fs.String("trace", "", "directory for one text file per run: each trial bought and each recommendation with its regret")
	landscape := fs.Bool("landscape", false, "print where each scale's best mixture lies and its regret at the target, and the regret along f*'s edge, then exit (with -out: landscape.json)")
	curves := fs.String("curves", "", "comma-separated costs (TRE): also print each policy's seed-median regret after each")
	var variants variantFlag
	fs.Var(&variants, "variant", "NAME=BASE:Field=value,... defines policy NAME as the GP preset BASE (mfms, mfbo, mfms-ei, gp-ei) with bo.MFConfig fields changed, e.g. -variant 'mfms-add=mfms:Product=false' (repeatable; name it in -policies)")
	merge := fs.String("merge", "", "comma-separated results.json files whose runs join this invocation's (each joins the run of its own world and objective, same f* and budget; runs are deterministic per policy, seed and setting, so runs of the same code made apart combine as if made together); only their runs with this invocation's seeds ([seed-base, seed-base+seeds)), noise levels and parallelisms are kept; with -policies \"\" only the merged runs are summarised")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(buildinfo.Line("mixbench"))
		return nil
	}
	sharedDir := *shared
	if sharedDir == "" {
		root, err := repoRoot()
		if err != nil {
			return err
		}
		sharedDir = filepath.Join(root, "..", "shared", "benchmarks")
	}
	path := *data
	if path == "" {
		path = filepath.Join(sharedDir, benchmark.DataModelFile)
	}
	if len(worlds) == 0 {
		worlds = worldFlag{"datamodel"}
	}
	objs := split(*objectives)
	if *objective != "" {
		objs = append(objs, *objective)
	}
	if *landscape {
		w, err := benchmark.OpenWorld("datamodel", path, sharedDir)
		if err != nil {
			return err
		}
		obj := "stackexchange_ce"
		if len(objs) > 0 {
			obj = objs[0]
		}
		return writeLandscape(w.(*benchmark.DataModelWorld).Model, obj, *fstar, *out)
	}
	noises, err := floats(*noise)
	if err != nil {
		return fmt.Errorf("-noise: %w", err)
	}
	pars, err := ints(*parallel)
	if err != nil {
		return fmt.Errorf("-parallel: %w", err)
	}
	base := benchmark.Config{
		Policies: split(*policies), Seeds: *seeds, SeedBase: *seedBase,
		Budget: *budget, Noise: noises, Parallel: pars, FStarSamples: *fstar, MaxTrials: *maxTrials, Workers: *workers,
	}
	if len(variants) > 0 {
		base.NewPolicy = func(name string) (bo.Policy, error) {
			if v, ok := variants[name]; ok {
				return bo.NewMF(name, v), nil
			}
			return bo.New(name)
		}
	}
	if !*quiet {
		base.Progress = func(s string) { fmt.Fprintln(os.Stderr, s) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var merged []*benchmark.Result
	for _, f := range split(*merge) {
		r, err := benchmark.LoadResult(f)
		if err != nil {
			return fmt.Errorf("-merge: %w", err)
		}
		r.Runs = keepRuns(r.Runs, *seedBase, *seeds, noises, pars)
		merged = append(merged, r)
	}
	command := "go run ./cmd/mixbench " + strings.Join(args, " ")
	fmt.Println(command)
	var heads []benchmark.Headline
	for _, wn := range worlds {
		world, err := benchmark.OpenWorld(wn, path, sharedDir)
		if err != nil {
			return err
		}
		wobjs := objs
		if len(wobjs) == 0 {
			wobjs = world.Objectives()
		}
		for _, obj := range wobjs {
			cfg := base
			cfg.World, cfg.Objective = world, obj
			if *traceDir != "" {
				dir := filepath.Join(*traceDir, fileName(world.Name()), obj)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return fmt.Errorf("-trace: %w", err)
				}
				cfg.Trace = func(policy string, seed uint64, set benchmark.Setting) (io.WriteCloser, error) {
					name := fmt.Sprintf("%s_seed%d_noise%g_par%d.txt", policy, seed, set.Noise, set.Parallel)
					return os.Create(filepath.Join(dir, name))
				}
			}
			var parts []*benchmark.Result
			for _, r := range merged {
				if r.World == world.Name() && r.Objective == obj {
					parts = append(parts, r)
				}
			}
			if len(cfg.Policies) > 0 || len(parts) == 0 {
				r, err := benchmark.Execute(ctx, cfg)
				if err != nil {
					return err
				}
				parts = append(parts, r)
			}
			res, err := benchmark.Merge(parts...)
			if err != nil {
				return err
			}
			sums := benchmark.Summarise(res, benchmark.Baselines)
			fmt.Println()
			if err := benchmark.WriteTable(os.Stdout, res, sums); err != nil {
				return err
			}
			if *curves != "" {
				costs, err := floats(*curves)
				if err != nil {
					return fmt.Errorf("-curves: %w", err)
				}
				if err := benchmark.WriteCurves(os.Stdout, res, costs); err != nil {
					return err
				}
			}
			if *out != "" {
				if err := benchmark.WriteFiles(filepath.Join(*out, fileName(world.Name()), obj), res, sums, command); err != nil {
					return err
				}
			}
			heads = append(heads, benchmark.Headlines(res, sums, *headline)...)
		}
	}
	if err := benchmark.WriteHeadlines(os.Stdout, heads); err != nil {
		return err
	}
	if *out != "" && len(heads) > 0 {
		return benchmark.WriteHeadlineFile(*out, heads, command)
	}
	return nil
}

// fileName makes a world's name usable as a directory name (recording:a/b.jsonl → recording_a_b.jsonl).
func fileName(s string) string {
	return strings.NewReplacer("/", "_", ":", "_", ",", "+", string(filepath.Separator), "_").Replace(s)
}

// worldFlag collects -world values; "all" stands for every named world.
type worldFlag []string

func (w *worldFlag) String() string { return strings.Join(*w, " ") }

func (w *worldFlag) Set(s string) error {
	if s == "all" {
		for _, n := range benchmark.WorldNames() {
			if !strings.Contains(n, ":") {
				*w = append(*w, n)
			}
		}
		return nil
	}
	*w = append(*w, s)
	return nil
}

// writeLandscape prints the objective's landscape report and, with a directory, writes it
// as landscape.json there.
func writeLandscape(model *sim.DataModel, objective string, samples int, dir string) error {
	ls, err := benchmark.MapLandscape(model, objective, samples, 1)
	if err != nil {
		return err
	}
	if err := benchmark.WriteLandscape(os.Stdout, ls); err != nil {
		return err
	}
	if dir == "" {
		return nil
	}
	return benchmark.WriteLandscapeFile(dir, ls)
}

// repoRoot is the nearest directory above the working directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory; pass -data")
		}
		dir = parent
	}
}

// keepRuns keeps the runs with one of this invocation's seeds, noise levels and
// parallelisms.
func keepRuns(runs []benchmark.Run, base uint64, n int, noises []float64, pars []int) []benchmark.Run {
	var out []benchmark.Run
	for _, r := range runs {
		if r.Seed >= base && r.Seed < base+uint64(n) &&
			slices.Contains(noises, r.Setting.Noise) && slices.Contains(pars, r.Setting.Parallel) {
			out = append(out, r)
		}
	}
	return out
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func floats(s string) ([]float64, error) {
	var out []float64
	for _, f := range split(s) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range split(s) {
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// variantFlag collects -variant definitions: policy name → configuration.
type variantFlag map[string]bo.MFConfig

func (v *variantFlag) String() string { return fmt.Sprint(len(*v), " variants") }

func (v *variantFlag) Set(s string) error {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want NAME=BASE:Field=value,..., got %q", s)
	}
	base, fields, _ := strings.Cut(rest, ":")
	presets := map[string]func() bo.MFConfig{"mfms": bo.MFMSConfig, "mfbo": bo.MFBOConfig, "mfms-ei": bo.MFMSEIConfig, "gp-ei": bo.GPEIConfig}
	mk, ok := presets[base]
	if !ok {
		return fmt.Errorf("variant %s: unknown base %q (mfms, mfbo, mfms-ei, gp-ei)", name, base)
	}
	cfg := mk()
	rv := reflect.ValueOf(&cfg).Elem()
	for _, kv := range split(fields) {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("variant %s: want Field=value, got %q", name, kv)
		}
		f := rv.FieldByName(k)
		if !f.IsValid() || !f.CanSet() {
			return fmt.Errorf("variant %s: bo.MFConfig has no settable field %q", name, k)
		}
		var err error
		switch f.Kind() {
		case reflect.Bool:
			var b bool
			b, err = strconv.ParseBool(val)
			f.SetBool(b)
		case reflect.Int:
			var i int64
			i, err = strconv.ParseInt(val, 10, 64)
			f.SetInt(i)
		case reflect.Float64:
			var x float64
			x, err = strconv.ParseFloat(val, 64)
			f.SetFloat(x)
		case reflect.String:
			f.SetString(val)
		default:
			return fmt.Errorf("variant %s: field %s cannot be set from the command line", name, k)
		}
		if err != nil {
			return fmt.Errorf("variant %s: %s: %w", name, k, err)
		}
	}
	if *v == nil {
		*v = variantFlag{}
	}
	(*v)[name] = cfg
	return nil
}
