package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mixopt/mixopt/internal/sim"
	"github.com/mixopt/mixopt/internal/store"
	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// writeCerts makes a throwaway CA and a server certificate for 127.0.0.1 and returns the
// paths of the CA certificate, server certificate and key.
func writeCerts(t *testing.T, dir string) (caPath, certPath, keyPath string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mixopt test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "coordinator"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, kind string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", der), write("server.key", "EC PRIVATE KEY", keyDER)
}

// mixctlCode runs mixctl and returns its exit code.
func mixctlCode(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), "mixctl"), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// The coordinator with TLS and tokens: each role reaches what it may and no more, health
// is open, and the dashboard and metrics need a viewer token.
func TestSecurityRolesOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCerts(t, dir)
	tokens := filepath.Join(dir, "tokens")
	const admin, viewer, worker = "admin-token-0123456789abcdef", "viewer-token-0123456789abcdef", "worker-token-0123456789abcdef"
	os.WriteFile(tokens, []byte(fmt.Sprintf("admin %s ops\nviewer %s dash\nworker %s nodes\n", admin, viewer, worker)), 0o600)
	addr := testutil.FreeAddr(t)
	httpAddrFile := filepath.Join(dir, "http")
	start(t, dir, "coordinator", "-listen", addr, "-init", "-db", filepath.Join(dir, "db"), "-tokens", tokens,
		"-tls-cert", cert, "-tls-key", key, "-http-listen", "127.0.0.1:0", "-http-addr-file", httpAddrFile)
	specPath := filepath.Join(dir, "spec.yaml")
	os.WriteFile(specPath, []byte(faultSpec(1, 1)), 0o644)
	base := []string{"--addr", addr, "--tls-ca", ca}
	tokenFile := func(tok string) string {
		p := filepath.Join(dir, "tok-"+tok[:5])
		os.WriteFile(p, []byte(tok+"\n"), 0o600)
		return p
	}
	eventually(t, 30*time.Second, "coordinator to serve", func() bool {
		code, _ := mixctlCode(t, nil, append(base, "--token-file", tokenFile(admin), "studies")...)
		return code == 0
	})
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want int
	}{
		{"no token", nil, []string{"studies"}, 7},
		{"wrong token", []string{"MIXOPT_TOKEN=not-a-known-token-at-all"}, []string{"studies"}, 7},
		{"viewer reads", []string{"MIXOPT_TOKEN_FILE=" + tokenFile(viewer)}, []string{"studies"}, 0},
		{"viewer may not create", []string{"MIXOPT_TOKEN_FILE=" + tokenFile(viewer)}, []string{"study", "create", "-f", specPath}, 8},
		{"worker may not read studies", []string{"MIXOPT_TOKEN=" + worker}, []string{"studies"}, 8},
		{"admin creates", []string{"MIXOPT_TOKEN=" + admin}, []string{"study", "create", "-f", specPath}, 0},
		{"admin backs up", []string{"MIXOPT_TOKEN=" + admin}, []string{"backup", "-f", filepath.Join(dir, "backup.db")}, 0},
		{"viewer may not back up", []string{"MIXOPT_TOKEN=" + viewer}, []string{"backup", "-f", filepath.Join(dir, "b2.db")}, 8},
	} {
		code, out := mixctlCode(t, tc.env, append(base, tc.args...)...)
		if code != tc.want {
			t.Errorf("%s: exit %d, want %d: %s", tc.name, code, tc.want, out)
		}
	}
	if code, out := mixctlCode(t, []string{"MIXOPT_TOKEN=" + admin}, "--addr", addr, "studies"); code != 6 {
		t.Errorf("plaintext against a TLS coordinator: exit %d, want 6 (unavailable): %s", code, out)
	}

	// The backup opens as a consistent store holding the study.
	db := testutil.OpenStore(t, filepath.Join(dir, "backup.db"))
	var studies []*pb.Study
	db.View(func(tx *store.Tx) (err error) { studies, err = tx.Studies(); return err })
	testutil.CheckAndClose(t, db)
	if len(studies) != 1 || studies[0].Spec.GetName() != "e2e-faults" {
		t.Fatalf("backup holds %v", studies)
	}

	// Health is open to stock clients; the handshake needs the CA.
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v, %v", hr, err)
	}

	// Metrics and dashboard: refused without a token, served to a viewer.
	httpAddr, _ := os.ReadFile(httpAddrFile)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", "https://"+strings.TrimSpace(string(httpAddr))+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d", code)
	}
	// Per-study gauges appear at the scheduler's next refresh.
	eventually(t, 30*time.Second, "per-study metrics", func() bool {
		code, body := get("/metrics", viewer)
		for _, name := range []string{"mixopt_points_ingested_total", "mixopt_gp_fit_duration_seconds",
			`mixopt_trials{state="pending",study="1"}`, `mixopt_budget_spent_flops{study="1"}`} {
			if code != 200 || !strings.Contains(body, name) {
				return false
			}
		}
		return true
	})
	if code, body := get("/", viewer); code != 200 || !strings.Contains(body, "<html") {
		t.Errorf("dashboard: %d %.200s", code, body)
	}
}

// Export a finished study as CSV, JSONL and a recording, and replay the recording.
func TestExportFormats(t *testing.T) {
	c := newCluster(t, "10s")
	c.coordinator()
	c.worker("w1", "20000")
	c.createStudy(faultSpec(3, 1))
	c.wait("2m")
	out, err := mixctl(t, c.addr, "export", "1", "--format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+3*40 || rows[0][0] != "trial" || !strings.Contains(strings.Join(rows[0], ","), "mean_ce") {
		t.Fatalf("csv: %d rows, header %v", len(rows), rows[0])
	}
	out, err = mixctl(t, c.addr, "export", "1", "--format", "jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.TrimSpace(out), "\n") + 1; n != 3 {
		t.Fatalf("jsonl: %d lines, want 3", n)
	}
	recPath := filepath.Join(c.dir, "rec.jsonl")
	if _, err := mixctl(t, c.addr, "export", "1", "--format", "recording", "-f", recPath); err != nil {
		t.Fatal(err)
	}
	rec, err := sim.LoadRecording(recPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Runs()) != 3 {
		t.Fatalf("recording has %d runs, want 3", len(rec.Runs()))
	}
	first := rec.Runs()[0]
	run, err := rec.Run(sim.Request{Domains: first.Domains, Mixture: first.Mixture, Scale: first.Scale,
		Params: first.Params, Steps: first.Steps})
	if err != nil || run.Distance != 0 || len(run.Points) != 40 || !bytes.Contains([]byte(run.SourceRun), []byte("trial")) {
		t.Fatalf("replaying the export: %d points, distance %v, run %q, %v", len(run.Points), run.Distance, run.SourceRun, err)
	}
}

// Token rotation: SIGHUP makes the coordinator read its tokens file again.
func TestTokenRotationOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	const oldTok, newTok = "admin-old-0123456789abcdef", "admin-new-0123456789abcdef"
	os.WriteFile(tokens, []byte("admin "+oldTok+"\n"), 0o600)
	addr := testutil.FreeAddr(t)
	coord := start(t, dir, "coordinator", "-listen", addr, "-http-listen", "", "-init", "-db", filepath.Join(dir, "db"), "-tokens", tokens)
	studies := func(tok string) int {
		code, _ := mixctlCode(t, []string{"MIXOPT_TOKEN=" + tok}, "--addr", addr, "studies")
		return code
	}
	eventually(t, 30*time.Second, "coordinator to serve", func() bool { return studies(oldTok) == 0 })
	if code := studies(newTok); code != 7 {
		t.Fatalf("new token before the reload: exit %d, want 7", code)
	}
	os.WriteFile(tokens, []byte("admin "+newTok+"\n"), 0o600)
	coord.signal(syscall.SIGHUP)
	eventually(t, 30*time.Second, "the new token to be accepted", func() bool { return studies(newTok) == 0 })
	if code := studies(oldTok); code != 7 {
		t.Fatalf("old token after the reload: exit %d, want 7", code)
	}
}
