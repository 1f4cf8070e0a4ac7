package auth

import (
	"context"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// MethodRoles is the role, besides admin, that may call each RPC of WorkerService and
// ControlService. A method missing from it is admin-only, so a new RPC is closed until it is
// listed (and a test fails until it is).
var MethodRoles = map[string]Role{
	pb.WorkerService_Register_FullMethodName:     RoleWorker,
	pb.WorkerService_AcquireTrial_FullMethodName: RoleWorker,
	pb.WorkerService_ReportPoints_FullMethodName: RoleWorker,
	pb.WorkerService_FinishTrial_FullMethodName:  RoleWorker,
	pb.WorkerService_FailTrial_FullMethodName:    RoleWorker,
	pb.WorkerService_Heartbeat_FullMethodName:    RoleWorker,

	pb.ControlService_GetStudy_FullMethodName:          RoleViewer,
	pb.ControlService_ListStudies_FullMethodName:       RoleViewer,
	pb.ControlService_ListTrials_FullMethodName:        RoleViewer,
	pb.ControlService_GetTrial_FullMethodName:          RoleViewer,
	pb.ControlService_ListWorkers_FullMethodName:       RoleViewer,
	pb.ControlService_GetRecommendation_FullMethodName: RoleViewer,
	pb.ControlService_GetStoreHealth_FullMethodName:    RoleViewer,

	pb.ControlService_CreateStudy_FullMethodName:  RoleAdmin,
	pb.ControlService_PauseStudy_FullMethodName:   RoleAdmin,
	pb.ControlService_ResumeStudy_FullMethodName:  RoleAdmin,
	pb.ControlService_CancelStudy_FullMethodName:  RoleAdmin,
	pb.ControlService_CancelTrial_FullMethodName:  RoleAdmin,
	pb.ControlService_DrainWorker_FullMethodName:  RoleAdmin,
	pb.ControlService_Backup_FullMethodName:       RoleAdmin,
	pb.ControlService_VerifyStore_FullMethodName:  RoleAdmin,
	pb.ControlService_UpdateStudy_FullMethodName:  RoleAdmin,
	pb.ControlService_DeleteStudy_FullMethodName:  RoleAdmin,
	pb.ControlService_AddTrial_FullMethodName:     RoleAdmin,
	pb.ControlService_ForgetWorker_FullMethodName: RoleAdmin,
}

// OpenServices are the services callable without a token: probes and stock clients need
// health and reflection, and neither reveals or changes study data.
var OpenServices = []string{
	"grpc.health.v1.Health",
	"grpc.reflection.v1.ServerReflection",
	"grpc.reflection.v1alpha.ServerReflection",
}

// IsOpen reports whether fullMethod ("/pkg.Service/Method") needs no token.
func IsOpen(fullMethod string) bool {
	for _, s := range OpenServices {
		if strings.HasPrefix(fullMethod, "/"+s+"/") {
			return true
		}
	}
	return false
}

// Allowed reports whether role may call fullMethod. Admin may call anything; other roles
// only what MethodRoles gives them.
func Allowed(role Role, fullMethod string) bool {
	if role == RoleAdmin {
		return true
	}
	need, ok := MethodRoles[fullMethod]
	return ok && role != RoleNone && role == need
}

// Authenticator checks bearer tokens on incoming calls. Its tokens can be swapped at run
// time (SetTokens, for example on SIGHUP) without restarting the server.
type Authenticator struct {
	tokens atomic.Pointer[Tokens]
}

// NewAuthenticator returns an Authenticator over tokens.
func NewAuthenticator(tokens *Tokens) *Authenticator {
	a := &Authenticator{}
	a.tokens.Store(tokens)
	return a
}

// SetTokens replaces the tokens; calls in flight keep the identity they authenticated with.
func (a *Authenticator) SetTokens(tokens *Tokens) { a.tokens.Store(tokens) }

type identityKey struct{}

// IdentityFrom returns the identity the interceptors authenticated the call as; false for
// open methods and when no Authenticator is installed.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Authorize checks the call's token against fullMethod and returns ctx carrying the
// caller's Identity. Errors are gRPC statuses: Unauthenticated or PermissionDenied.
func (a *Authenticator) Authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	if IsOpen(fullMethod) {
		return ctx, nil
	}
	tok, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	id, ok := a.tokens.Load().Lookup(tok)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "unknown bearer token")
	}
	if !Allowed(id.Role, fullMethod) {
		return nil, status.Errorf(codes.PermissionDenied, "role %s may not call %s", id.Role, fullMethod)
	}
	return withIdentity(ctx, id), nil
}

func withIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// bearer extracts the token from "authorization: Bearer <token>".
func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", status.Error(codes.Unauthenticated, "missing bearer token (metadata \"authorization: Bearer <token>\")")
	}
	if len(vals) > 1 {
		return "", status.Error(codes.Unauthenticated, "more than one authorization header")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(tok) == "" {
		return "", status.Error(codes.Unauthenticated, "authorization is not \"Bearer <token>\"")
	}
	return strings.TrimSpace(tok), nil
}

// UnaryServerInterceptor authorizes unary calls.
func (a *Authenticator) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.Authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor authorizes streaming calls.
func (a *Authenticator) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.Authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &identityStream{ServerStream: ss, ctx: ctx})
	}
}

// identityStream hands the handler the context carrying the caller's identity.
type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }

// ServerOptions are the interceptors as server options; chain them first so that nothing
// runs for an unauthenticated call.
func (a *Authenticator) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamServerInterceptor()),
	}
}
