package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// pagedControl serves studies and workers two to a page, as a coordinator with more
// records than fit a page does.
type pagedControl struct {
	pb.UnimplementedControlServiceServer
	studies, workers int
	calls            int
}

func page(token string, total int) (from, to int, next string) {
	from, _ = strconv.Atoi(token)
	to = min(from+2, total)
	if to < total {
		next = strconv.Itoa(to)
	}
	return from, to, next
}

func (p *pagedControl) ListStudies(_ context.Context, req *pb.ListStudiesRequest) (*pb.ListStudiesResponse, error) {
	p.calls++
	from, to, next := page(req.PageToken, p.studies)
	resp := &pb.ListStudiesResponse{NextPageToken: next}
	for i := from; i < to; i++ {
		resp.Studies = append(resp.Studies, &pb.StudyStatus{Study: &pb.Study{
			Id: uint64(i + 1), State: pb.StudyState_STUDY_STATE_RUNNING,
			Spec: &pb.StudySpec{Name: "s" + strconv.Itoa(i+1), BudgetFlops: 1, Target: &pb.Fidelity{Scale: "x", Steps: 1}},
		}})
	}
	return resp, nil
}

func (p *pagedControl) ListWorkers(_ context.Context, req *pb.ListWorkersRequest) (*pb.ListWorkersResponse, error) {
	p.calls++
	from, to, next := page(req.PageToken, p.workers)
	resp := &pb.ListWorkersResponse{NextPageToken: next}
	for i := from; i < to; i++ {
		resp.Workers = append(resp.Workers, &pb.Worker{Id: uint64(i + 1), Hostname: "h" + strconv.Itoa(i+1)})
	}
	return resp, nil
}

func serve(t *testing.T, srv *grpc.Server, control pb.ControlServiceServer) string {
	t.Helper()
	pb.RegisterControlServiceServer(srv, control)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func run(args ...string) (string, error) {
	var out bytes.Buffer
	cmd := newRootCmd(&out)
	cmd.SetArgs(append(args, "--timeout", "10s"))
	err := cmd.Execute()
	return out.String(), err
}

// mixctl status reads every page: 5 studies and 3 workers in pages of 2 are 5 calls.
func TestStatusFollowsPages(t *testing.T) {
	control := &pagedControl{studies: 5, workers: 3}
	addr := serve(t, grpc.NewServer(), control)
	out, err := run("status", "--addr", addr, "-o", "json")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var got struct {
		Studies []struct{ Study struct{ ID uint64 } } `json:"studies"`
		Workers []struct{ Hostname string }           `json:"workers"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if len(got.Studies) != 5 || len(got.Workers) != 3 || got.Workers[2].Hostname != "h3" {
		t.Errorf("status listed %d studies and %d workers (%v), want 5 and 3", len(got.Studies), len(got.Workers), got.Workers)
	}
	if control.calls != 5 {
		t.Errorf("%d list calls, want 5 (3 pages of studies, 2 of workers)", control.calls)
	}
	out, err = run("workers", "--addr", addr)
	if err != nil || !strings.Contains(out, "h1") || !strings.Contains(out, "h3") {
		t.Errorf("workers table = %q, %v; want all three", out, err)
	}
}

// stuckControl returns the same token for ever: mixctl must stop, not loop.
type stuckControl struct {
	pb.UnimplementedControlServiceServer
}

func (stuckControl) ListWorkers(context.Context, *pb.ListWorkersRequest) (*pb.ListWorkersResponse, error) {
	return &pb.ListWorkersResponse{Workers: []*pb.Worker{{Id: 1}}, NextPageToken: "again"}, nil
}

func TestPagesRefuseARepeatedToken(t *testing.T) {
	addr := serve(t, grpc.NewServer(), stuckControl{})
	if _, err := run("workers", "--addr", addr); err == nil || !strings.Contains(err.Error(), "same page token") {
		t.Errorf("workers against a stuck server: %v, want a repeated-token error", err)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Against a TLS coordinator, plaintext mixctl says TLS is needed (exit 6, unavailable);
// with --tls it speaks TLS and trusts the system roots, which do not hold this
// self-signed certificate; against a plaintext coordinator --tls says to drop it.
func TestTLSMismatchIsExplained(t *testing.T) {
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	tlsAddr := serve(t, grpc.NewServer(grpc.Creds(creds)), &pagedControl{})
	_, err := run("workers", "--addr", tlsAddr)
	if err == nil || !strings.Contains(err.Error(), "may require TLS") || !strings.Contains(err.Error(), "--tls") {
		t.Errorf("plaintext against TLS: %v, want a hint to use --tls or --tls-ca", err)
	}
	if code := exitCode(err); code != 6 {
		t.Errorf("exit code %d, want 6", code)
	}
	_, err = run("workers", "--addr", tlsAddr, "--tls")
	if err == nil || !strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "may require TLS") {
		t.Errorf("--tls against a self-signed coordinator: %v, want a certificate error", err)
	}

	plainAddr := serve(t, grpc.NewServer(), &pagedControl{workers: 1})
	_, err = run("workers", "--addr", plainAddr, "--tls")
	if err == nil || !strings.Contains(err.Error(), "does not serve TLS") {
		t.Errorf("--tls against plaintext: %v, want a hint to drop --tls", err)
	}
}
