package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/mixopt/mixopt/internal/testutil"
)

// flagNames runs a binary with -h and returns the flags its usage lists, so that the
// shipped deploy files are checked against the flags the binaries really take.
func flagNames(t *testing.T, bin string, pre ...string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(bin, append(pre, "-h")...).CombinedOutput()
	names := map[string]bool{}
	re := regexp.MustCompile(`^\s+-([a-zA-Z0-9][a-zA-Z0-9-]*)`)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			names[m[1]] = true
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s %v -h listed no flags:\n%s", bin, pre, out)
	}
	return names
}

// checkFlags reports every -flag or -flag=value argument that the binary does not take.
func checkFlags(t *testing.T, where string, args []string, known map[string]bool) {
	t.Helper()
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !known[name] {
			t.Errorf("%s: flag -%s is not a flag of the binary", where, name)
		}
	}
}

type manifestDoc struct {
	file string
	raw  []byte
	kind string
}

func readManifests(t *testing.T) []manifestDoc {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(), "deploy", "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var docs []manifestDoc
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(part)) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(part), &tm); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			docs = append(docs, manifestDoc{file: filepath.Base(f), raw: []byte(part), kind: tm.Kind})
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// dockerEntrypoint reads the ENTRYPOINT of deploy/docker/NAME.Dockerfile.
func dockerEntrypoint(t *testing.T, image string) []string {
	t.Helper()
	name := strings.TrimPrefix(image, "mixopt-")
	b, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "docker", name+".Dockerfile"))
	if err != nil {
		t.Fatalf("image %s: no Dockerfile builds it: %v", image, err)
		return nil
	}
	m := regexp.MustCompile(`(?m)^ENTRYPOINT\s+\[(.*)\]\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s.Dockerfile: no ENTRYPOINT in exec form", name)
	}
	var ep []string
	for _, s := range strings.Split(string(m[1]), ",") {
		ep = append(ep, strings.Trim(strings.TrimSpace(s), `"`))
	}
	return ep
}

// TestDeployManifests decodes every shipped Kubernetes manifest into its Kubernetes type
// (strictly: a misspelt or misplaced field fails) and checks what kept the manifests from
// running as shipped: images no Dockerfile builds, flags the binaries do not take, a real
// worker without -data-dir, a hostPath state folder the non-root worker cannot write,
// plaintext probes against a TLS coordinator and scrape annotations that cannot
// authenticate.
func TestDeployManifests(t *testing.T) {
	bin := binaries(t)
	flags := map[string]map[string]bool{
		"coordinator": flagNames(t, filepath.Join(bin, "coordinator")),
		"worker":      flagNames(t, filepath.Join(bin, "worker")),
	}
	probeFlags := flagNames(t, filepath.Join(bin, "coordinator"), "probe")
	kinds := map[string]int{}
	for _, d := range readManifests(t) {
		kinds[d.kind]++
		var pod *corev1.PodTemplateSpec
		var claims []corev1.PersistentVolumeClaim
		switch d.kind {
		case "Namespace":
			strictDecode(t, d, &corev1.Namespace{})
		case "Service":
			strictDecode(t, d, &corev1.Service{})
		case "ConfigMap":
			var cm corev1.ConfigMap
			strictDecode(t, d, &cm)
			checkScrapeConfig(t, d.file, cm)
		case "StatefulSet":
			var s appsv1.StatefulSet
			strictDecode(t, d, &s)
			pod, claims = &s.Spec.Template, s.Spec.VolumeClaimTemplates
		case "DaemonSet":
			var s appsv1.DaemonSet
			strictDecode(t, d, &s)
			pod = &s.Spec.Template
		case "Kustomization":
			checkKustomization(t, d)
		default:
			t.Errorf("%s: kind %q is not checked by this test", d.file, d.kind)
		}
		if pod != nil {
			checkPod(t, d.file, pod, claims, flags, probeFlags)
		}
	}
	for _, k := range []string{"StatefulSet", "DaemonSet", "Service", "ConfigMap", "Kustomization"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

func strictDecode(t *testing.T, d manifestDoc, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(d.raw, into); err != nil {
		t.Errorf("%s: %s does not decode strictly: %v", d.file, d.kind, err)
	}
}

func checkKustomization(t *testing.T, d manifestDoc) {
	var k struct {
		Resources []string `json:"resources"`
		Images    []struct {
			Name string `json:"name"`
		} `json:"images"`
	}
	if err := yaml.Unmarshal(d.raw, &k); err != nil {
		t.Fatalf("%s: %v", d.file, err)
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(repoRoot(), "deploy", "kubernetes", r)); err != nil {
			t.Errorf("%s: resource %s: %v", d.file, r, err)
		}
	}
	for _, img := range k.Images {
		dockerEntrypoint(t, img.Name)
	}
}

func checkPod(t *testing.T, file string, pod *corev1.PodTemplateSpec, claims []corev1.PersistentVolumeClaim, flags map[string]map[string]bool, probeFlags map[string]bool) {
	t.Helper()
	if _, ok := pod.Annotations["prometheus.io/scrape"]; ok {
		t.Errorf("%s: prometheus.io/scrape annotations cannot send the token /metrics needs", file)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, c := range claims {
		volumes[c.Name] = corev1.Volume{Name: c.Name}
	}
	podUID := int64(0)
	if sc := pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		podUID = *sc.RunAsUser
	}
	chowned := map[string]bool{} // hostPath volumes an init container hands to podUID
	for _, c := range pod.Spec.InitContainers {
		if len(c.Command) >= 3 && c.Command[0] == "chown" && strings.HasPrefix(c.Command[1], fmt.Sprintf("%d:", podUID)) {
			for _, m := range c.VolumeMounts {
				if slices.Contains(c.Command[2:], m.MountPath) {
					chowned[m.Name] = true
				}
			}
		}
		dockerEntrypoint(t, c.Image)
	}
	for _, c := range pod.Spec.Containers {
		where := file + ": container " + c.Name
		argv := c.Command
		if len(argv) == 0 {
			argv = dockerEntrypoint(t, c.Image)
		} else {
			dockerEntrypoint(t, c.Image)
		}
		argv = append(slices.Clone(argv), c.Args...)
		binName := filepath.Base(argv[0])
		known, ok := flags[binName]
		if !ok {
			t.Errorf("%s: runs %s, not a mixopt binary", where, argv[0])
			continue
		}
		checkFlags(t, where, argv[1:], known)
		hasFlag := func(name string) bool {
			return slices.ContainsFunc(argv[1:], func(a string) bool { return a == "-"+name || strings.HasPrefix(a, "-"+name+"=") })
		}
		if binName == "worker" && !hasFlag("simulate") && !hasFlag("data-dir") {
			t.Errorf("%s: a real worker needs -data-dir", where)
		}
		tlsOn := hasFlag("tls-cert")
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
			if p == nil {
				continue
			}
			if tlsOn && (p.GRPC != nil || p.TCPSocket != nil || (p.HTTPGet != nil && p.HTTPGet.Scheme != corev1.URISchemeHTTPS)) {
				t.Errorf("%s: a plaintext probe cannot reach a TLS coordinator", where)
			}
			if p.Exec != nil {
				cmd := p.Exec.Command
				if len(cmd) < 2 || filepath.Base(cmd[0]) != "coordinator" || cmd[1] != "probe" {
					t.Errorf("%s: exec probe %v is not `coordinator probe`", where, cmd)
					continue
				}
				checkFlags(t, where+" probe", cmd[2:], probeFlags)
				if tlsOn && !slices.ContainsFunc(cmd, func(a string) bool { return strings.HasPrefix(a, "-tls") }) {
					t.Errorf("%s: the probe of a TLS coordinator has no -tls flag", where)
				}
			}
		}
		for _, m := range c.VolumeMounts {
			v, ok := volumes[m.Name]
			if !ok {
				t.Errorf("%s: mounts undeclared volume %s", where, m.Name)
				continue
			}
			if v.HostPath != nil && !m.ReadOnly && podUID != 0 && !chowned[m.Name] {
				t.Errorf("%s: hostPath %s is root-owned and the pod runs as uid %d: no init container chowns it", where, v.HostPath.Path, podUID)
			}
		}
	}
}

func checkScrapeConfig(t *testing.T, file string, cm corev1.ConfigMap) {
	t.Helper()
	raw, ok := cm.Data["scrape.yaml"]
	if !ok {
		t.Errorf("%s: ConfigMap %s has no scrape.yaml", file, cm.Name)
		return
	}
	var sc struct {
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			Scheme        string `json:"scheme"`
			Authorization struct {
				CredentialsFile string `json:"credentials_file"`
			} `json:"authorization"`
			TLSConfig struct {
				CAFile string `json:"ca_file"`
			} `json:"tls_config"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(raw), &sc); err != nil || len(sc.ScrapeConfigs) == 0 {
		t.Errorf("%s: scrape.yaml: %v (%d jobs)", file, err, len(sc.ScrapeConfigs))
		return
	}
	for _, j := range sc.ScrapeConfigs {
		if j.Scheme != "https" || j.Authorization.CredentialsFile == "" || j.TLSConfig.CAFile == "" {
			t.Errorf("%s: scrape job %s must use https, a CA and a token (the coordinator ships with TLS and tokens)", file, j.JobName)
		}
	}
}

// TestDeployUnitsAndSlurm checks the systemd units' and the Slurm script's flags against
// the binaries, and runs shellcheck on the Slurm script.
func TestDeployUnitsAndSlurm(t *testing.T) {
	bin := binaries(t)
	for unit, binName := range map[string]string{"mixopt-coordinator.service": "coordinator", "mixopt-worker.service": "worker"} {
		b, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^ExecStart=(\S+)(.*)$`).FindSubmatch(b)
		if m == nil || filepath.Base(string(m[1])) != binName {
			t.Fatalf("%s: no ExecStart of %s", unit, binName)
		}
		checkFlags(t, unit, strings.Fields(string(m[2])), flagNames(t, filepath.Join(bin, binName)))
	}
	script := filepath.Join(repoRoot(), "deploy", "slurm", "mixopt-workers.sbatch")
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)exec "\$MIXOPT_BIN/worker"(.*?)\n'`).FindSubmatch(b)
	if m == nil {
		t.Fatal("mixopt-workers.sbatch: no exec of the worker")
	}
	checkFlags(t, "mixopt-workers.sbatch", strings.Fields(strings.ReplaceAll(string(m[1]), "\\\n", " ")), flagNames(t, filepath.Join(bin, "worker")))
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is not installed (make test-deps installs Debian's shellcheck)")
	}
	if out, err := exec.Command(sc, script).CombinedOutput(); err != nil {
		t.Errorf("shellcheck %s: %v\n%s", filepath.Base(script), err, out)
	}
}

// TestProbeOverTLS runs `coordinator probe` against a real TLS coordinator: it passes with
// the CA and fails in plaintext, which is what Kubernetes' built-in gRPC probe speaks.
func TestProbeOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCerts(t, dir)
	addr := testutil.FreeAddr(t)
	start(t, dir, "coordinator", "-listen", addr, "-init", "-db", filepath.Join(dir, "db"), "-http-listen", "",
		"-tls-cert", cert, "-tls-key", key)
	probe := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), "coordinator"), append([]string{"probe", "-addr", addr, "-timeout", "2s"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	eventually(t, 30*time.Second, "probe with the CA to pass", func() bool { return probe("-tls-ca", ca) == nil })
	var exitErr *exec.ExitError
	if err := probe(); !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("plaintext probe of a TLS coordinator: %v, want exit 1", err)
	}
	if err := probe("-tls"); !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("probe trusting only system roots: %v, want exit 1 (the test CA is not among them)", err)
	}
}
