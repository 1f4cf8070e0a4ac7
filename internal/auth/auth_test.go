package auth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mixopt/mixopt/internal/testutil"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

const (
	adminTok  = "admin-0123456789abcdef"
	viewerTok = "viewer-0123456789abcdef"
	workerTok = "worker-0123456789abcdef"
)

const tokensFile = `# role token name
admin  ` + adminTok + `  alice
viewer ` + viewerTok + ` # no name
worker ` + workerTok + ` gpu-nodes

`

func mustTokens(t *testing.T) *Tokens {
	t.Helper()
	toks, err := ParseTokens(strings.NewReader(tokensFile))
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

func TestParseTokens(t *testing.T) {
	toks := mustTokens(t)
	if toks.Len() != 3 {
		t.Fatalf("Len = %d, want 3", toks.Len())
	}
	for _, tc := range []struct {
		tok  string
		want Identity
		ok   bool
	}{
		{adminTok, Identity{RoleAdmin, "alice"}, true},
		{viewerTok, Identity{RoleViewer, ""}, true},
		{workerTok, Identity{RoleWorker, "gpu-nodes"}, true},
		{adminTok + "x", Identity{}, false},
		{"", Identity{}, false},
	} {
		got, ok := toks.Lookup(tc.tok)
		if ok != tc.ok || got != tc.want {
			t.Errorf("Lookup(%q) = %v, %v; want %v, %v", tc.tok, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseTokensErrors(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"empty", "# nothing\n\n", "no tokens"},
		{"bad role", "root " + adminTok, "line 1: role \"root\""},
		{"one field", "admin", "line 1: want"},
		{"four fields", "admin " + adminTok + " a b", "line 1: want"},
		{"short", "\nadmin short", "line 2: token is 5 characters"},
		{"duplicate", "admin " + adminTok + "\nviewer " + adminTok, "line 2: same token as line 1"},
		{"non-ascii", "admin " + adminTok + "é", "non-printable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTokens(strings.NewReader(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), adminTok) {
				t.Errorf("error echoes the token: %v", err)
			}
		})
	}
}

func TestLoadTokensFilePermissionWarning(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o644, true}} {
		path := filepath.Join(dir, "tokens-"+tc.mode.String())
		if err := os.WriteFile(path, []byte(tokensFile), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil { // umask may have narrowed it
			t.Fatal(err)
		}
		toks, warn, err := LoadTokensFile(path)
		if err != nil || toks.Len() != 3 {
			t.Fatalf("mode %v: %v", tc.mode, err)
		}
		if (warn != "") != tc.warn {
			t.Errorf("mode %v: warning %q, want one: %v", tc.mode, warn, tc.warn)
		}
	}
	if _, _, err := LoadTokensFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

// rpcs lists every RPC of the mixopt services from their descriptors, so that a new RPC
// shows up here without anyone listing it.
func rpcs() []string {
	var out []string
	for _, sd := range []*grpc.ServiceDesc{&pb.WorkerService_ServiceDesc, &pb.ControlService_ServiceDesc} {
		for _, m := range sd.Methods {
			out = append(out, "/"+sd.ServiceName+"/"+m.MethodName)
		}
		for _, s := range sd.Streams {
			out = append(out, "/"+sd.ServiceName+"/"+s.StreamName)
		}
	}
	return out
}

func TestMethodRolesCoverEveryRPC(t *testing.T) {
	all := map[string]bool{}
	for _, m := range rpcs() {
		all[m] = true
		if _, ok := MethodRoles[m]; !ok {
			t.Errorf("%s has no entry in MethodRoles", m)
		}
	}
	for m := range MethodRoles {
		if !all[m] {
			t.Errorf("MethodRoles lists %s, which no service has", m)
		}
	}
	for m, r := range MethodRoles {
		worker := strings.HasPrefix(m, "/mixopt.v1.WorkerService/")
		if worker != (r == RoleWorker) {
			t.Errorf("%s: role %s; WorkerService methods, and only they, are the worker role's", m, r)
		}
	}
}

// wantCode is the policy the table test checks against, written independently of
// MethodRoles: workers call WorkerService, viewers the read methods, admins everything.
func wantCode(role Role, method string) codes.Code {
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	read := strings.HasPrefix(name, "Get") || strings.HasPrefix(name, "List")
	switch {
	case role == RoleAdmin,
		role == RoleWorker && svc == "mixopt.v1.WorkerService",
		role == RoleViewer && svc == "mixopt.v1.ControlService" && read:
		return codes.Unimplemented // passed the interceptor, reached the stub
	}
	return codes.PermissionDenied
}

type testServer struct {
	pb.UnimplementedWorkerServiceServer
	pb.UnimplementedControlServiceServer
}

// startServer serves stub services behind a's interceptors (and opts) in-process, and
// returns a client connection to them.
func startServer(t *testing.T, a *Authenticator, opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	return testutil.Serve(t, func(srv *grpc.Server) {
		pb.RegisterWorkerServiceServer(srv, testServer{})
		pb.RegisterControlServiceServer(srv, testServer{})
		healthpb.RegisterHealthServer(srv, health.NewServer())
		srv.RegisterService(&echoDesc, nil)
	}, append(a.ServerOptions(), opts...)).Conn
}

func withToken(tok string) []grpc.CallOption {
	if tok == "" {
		return nil
	}
	creds, err := NewTokenCredentials(tok, false)
	if err != nil {
		panic(err)
	}
	return []grpc.CallOption{grpc.PerRPCCredentials(creds)}
}

func TestRoleMatrix(t *testing.T) {
	conn := startServer(t, NewAuthenticator(mustTokens(t)))
	callers := []struct {
		name  string
		token string
		role  Role
	}{
		{"no token", "", RoleNone},
		{"unknown token", "nobody-0123456789abcdef", RoleNone},
		{"worker", workerTok, RoleWorker},
		{"viewer", viewerTok, RoleViewer},
		{"admin", adminTok, RoleAdmin},
	}
	for _, m := range rpcs() {
		for _, c := range callers {
			want := codes.Unauthenticated
			if c.role != RoleNone {
				want = wantCode(c.role, m)
			}
			// Every request message decodes from empty bytes, so an Empty stands in for each.
			err := conn.Invoke(context.Background(), m, &emptypb.Empty{}, &emptypb.Empty{}, withToken(c.token)...)
			if got := status.Code(err); got != want {
				t.Errorf("%s as %s: %v, want %v", m, c.name, err, want)
			}
		}
	}
}

func TestMalformedAuthorization(t *testing.T) {
	conn := startServer(t, NewAuthenticator(mustTokens(t)))
	for _, hdr := range []string{"Basic " + adminTok, adminTok, "Bearer ", "Bearer"} {
		ctx := metadataCtx("authorization", hdr)
		err := conn.Invoke(ctx, pb.ControlService_ListStudies_FullMethodName, &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("authorization %q: %v, want Unauthenticated", hdr, err)
		}
	}
	// The scheme is case-insensitive (RFC 7235).
	err := conn.Invoke(metadataCtx("authorization", "bearer "+adminTok), pb.ControlService_ListStudies_FullMethodName, &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("lower-case scheme: %v", err)
	}
}

func TestHealthIsOpen(t *testing.T) {
	conn := startServer(t, NewAuthenticator(mustTokens(t)))
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without a token: %v %v", resp, err)
	}
	// Streaming open method: Watch sends the current status first.
	w, err := healthpb.NewHealthClient(conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatalf("health watch without a token: %v", err)
	}
}

func TestSetTokensRotates(t *testing.T) {
	a := NewAuthenticator(mustTokens(t))
	conn := startServer(t, a)
	newTok := "rotated-0123456789abcdef"
	toks, err := ParseTokens(strings.NewReader("admin " + newTok))
	if err != nil {
		t.Fatal(err)
	}
	a.SetTokens(toks)
	call := func(tok string) codes.Code {
		return status.Code(conn.Invoke(context.Background(), pb.ControlService_ListStudies_FullMethodName, &emptypb.Empty{}, &emptypb.Empty{}, withToken(tok)...))
	}
	if c := call(adminTok); c != codes.Unauthenticated {
		t.Errorf("old token after rotation: %v", c)
	}
	if c := call(newTok); c != codes.Unimplemented {
		t.Errorf("new token after rotation: %v", c)
	}
}

// echoDesc is a streaming service outside MethodRoles (so admin-only) whose handler
// answers with the caller's identity, to test the stream interceptor end to end.
var echoDesc = grpc.ServiceDesc{
	ServiceName: "mixopt.test.Echo",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Who",
		ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			if err := ss.RecvMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			id, ok := IdentityFrom(ss.Context())
			if !ok {
				return status.Error(codes.Internal, "no identity in the stream context")
			}
			return ss.SendMsg(wrapperspb.String(id.Role.String() + "/" + id.Name))
		},
	}},
}

func TestStreamInterceptor(t *testing.T) {
	conn := startServer(t, NewAuthenticator(mustTokens(t)))
	who := func(tok string) (string, error) {
		s, err := conn.NewStream(context.Background(), &echoDesc.Streams[0], "/mixopt.test.Echo/Who", withToken(tok)...)
		if err != nil {
			return "", err
		}
		if err := s.SendMsg(&emptypb.Empty{}); err != nil {
			return "", err
		}
		if err := s.CloseSend(); err != nil {
			return "", err
		}
		var out wrapperspb.StringValue
		err = s.RecvMsg(&out)
		return out.Value, err
	}
	if got, err := who(adminTok); err != nil || got != "admin/alice" {
		t.Errorf("admin: %q %v, want admin/alice", got, err)
	}
	if _, err := who(viewerTok); status.Code(err) != codes.PermissionDenied {
		t.Errorf("viewer on an unlisted stream: %v, want PermissionDenied", err)
	}
	if _, err := who(""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v, want Unauthenticated", err)
	}
}

func TestTokenCredentialsRefuseInsecureWhenTLSRequired(t *testing.T) {
	conn := startServer(t, NewAuthenticator(mustTokens(t)))
	creds, err := NewTokenCredentials(adminTok, true)
	if err != nil {
		t.Fatal(err)
	}
	err = conn.Invoke(context.Background(), pb.ControlService_ListStudies_FullMethodName, &emptypb.Empty{}, &emptypb.Empty{}, grpc.PerRPCCredentials(creds))
	if err == nil || status.Code(err) == codes.Unimplemented {
		t.Fatalf("token sent over an insecure connection: %v", err)
	}
	if _, err := NewTokenCredentials("", false); err == nil {
		t.Error("empty token accepted")
	}
}

func TestClientToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  from-file-token \nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(dir, "env-token")
	if err := os.WriteFile(envFile, []byte("from-env-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvToken, "from-env")
	t.Setenv(EnvTokenFile, "")
	if got, err := ClientToken(""); err != nil || got != "from-env" {
		t.Errorf("env: %q %v", got, err)
	}
	t.Setenv(EnvTokenFile, envFile)
	if got, err := ClientToken(""); err != nil || got != "from-env-file" {
		t.Errorf("env file: %q %v", got, err)
	}
	if got, err := ClientToken(file); err != nil || got != "from-file-token" {
		t.Errorf("flag file: %q %v", got, err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ClientToken(empty); err == nil {
		t.Error("empty token file accepted")
	}
	t.Setenv(EnvTokenFile, "")
	t.Setenv(EnvToken, "")
	if got, err := ClientToken(""); err != nil || got != "" {
		t.Errorf("nothing set: %q %v", got, err)
	}
}
