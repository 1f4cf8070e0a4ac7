package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func metadataCtx(kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), kv...)
}

// ca is a throwaway certificate authority that issues certificates into PEM files.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

// serialNumber is random, as RFC 5280 advises; tests need only that it is unique.
func serialNumber(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newCA(t *testing.T, dir, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c := &ca{cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	writePEM(t, c.file, "CERTIFICATE", der)
	return c
}

// issue writes name.pem and name-key.pem for a leaf certificate; server certificates are
// valid for 127.0.0.1 and localhost.
func (c *ca) issue(t *testing.T, dir, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

type pki struct {
	ca, otherCA               *ca
	srvCert, srvKey           string
	cliCert, cliKey           string
	strangerCert, strangerKey string // signed by otherCA
}

func newPKI(t *testing.T) pki {
	dir := t.TempDir()
	p := pki{ca: newCA(t, dir, "ca"), otherCA: newCA(t, dir, "other-ca")}
	p.srvCert, p.srvKey = p.ca.issue(t, dir, "server", true)
	p.cliCert, p.cliKey = p.ca.issue(t, dir, "client", false)
	p.strangerCert, p.strangerKey = p.otherCA.issue(t, dir, "stranger", false)
	return p
}

// serveTLS starts a gRPC server with the health service on loopback TCP and returns its
// address.
func serveTLS(t *testing.T, certFile, keyFile, clientCA string) string {
	t.Helper()
	cfg, err := ServerTLSConfig(certFile, keyFile, clientCA)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// check dials addr with a client TLS config and calls Health.Check, returning the call's
// error and the server certificate's common name when the handshake succeeded.
func check(t *testing.T, addr, caFile, certFile, keyFile string) (string, error) {
	t.Helper()
	cfg, err := ClientTLSConfig(caFile, certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var p peer.Peer
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if err != nil {
		return "", err
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		t.Fatalf("call succeeded without TLS: %T", p.AuthInfo)
	}
	return ti.State.PeerCertificates[0].Subject.CommonName, nil
}

func TestTLSHandshake(t *testing.T) {
	p := newPKI(t)
	addr := serveTLS(t, p.srvCert, p.srvKey, "")
	if cn, err := check(t, addr, p.ca.file, "", ""); err != nil || cn != "server" {
		t.Fatalf("TLS with the right CA: %q %v", cn, err)
	}
	// A client that does not trust the server's CA refuses the handshake.
	if _, err := check(t, addr, p.otherCA.file, "", ""); status.Code(err) != codes.Unavailable {
		t.Fatalf("TLS with the wrong CA: %v, want Unavailable", err)
	}
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	addr := serveTLS(t, p.srvCert, p.srvKey, p.ca.file)
	if cn, err := check(t, addr, p.ca.file, p.cliCert, p.cliKey); err != nil || cn != "server" {
		t.Fatalf("mTLS with a client certificate: %q %v", cn, err)
	}
	if _, err := check(t, addr, p.ca.file, "", ""); status.Code(err) != codes.Unavailable {
		t.Fatalf("mTLS without a client certificate: %v, want Unavailable", err)
	}
	if _, err := check(t, addr, p.ca.file, p.strangerCert, p.strangerKey); status.Code(err) != codes.Unavailable {
		t.Fatalf("mTLS with a certificate from another CA: %v, want Unavailable", err)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"server without key":      func() error { _, err := ServerTLSConfig(p.srvCert, "", ""); return err },
		"server key mismatch":     func() error { _, err := ServerTLSConfig(p.srvCert, p.cliKey, ""); return err },
		"server CA not PEM":       func() error { _, err := ServerTLSConfig(p.srvCert, p.srvKey, notPEM); return err },
		"client CA missing":       func() error { _, err := ClientTLSConfig(filepath.Join(dir, "nope"), "", "", ""); return err },
		"client cert without key": func() error { _, err := ClientTLSConfig(p.ca.file, p.cliCert, "", ""); return err },
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
