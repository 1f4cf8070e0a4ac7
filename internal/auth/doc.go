// Package auth secures the coordinator's gRPC API: bearer tokens with roles, TLS and mutual
// TLS, and a rate limit on worker registration.
//
// # Tokens and roles
//
// A tokens file holds one token per line as "role token [name]"; '#' starts a comment and
// blank lines are skipped:
//
//	# role   token                                                              name (for logs)
//	admin    4f1d0c3e9a0b7d2e8c6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d   alice
//	viewer   0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9   grafana
//	worker   9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0   gpu-nodes
//
// Roles are worker (WorkerService), viewer (ControlService reads: Get*, List*,
// GetRecommendation) and admin (everything). Tokens are at least MinTokenLen printable
// characters without spaces (generate with `openssl rand -hex 32`) and must be unique.
// LoadTokensFile reports a warning when the file is readable by group or others.
//
// The Authenticator's interceptors read "authorization: Bearer <token>" from the request
// metadata: a missing, malformed or unknown token is Unauthenticated, a known token whose
// role may not call the method is PermissionDenied. Tokens are compared in constant time
// (over their SHA-256 digests, so neither content nor length leaks). The health and
// reflection services are open so that probes and stock clients (grpcurl list) work without
// a token. Methods are mapped to roles by MethodRoles; a method missing from it is
// admin-only.
//
// Server wiring:
//
//	toks, warn, err := auth.LoadTokensFile(path) // log warn when non-empty
//	a := auth.NewAuthenticator(toks)
//	srv := grpc.NewServer(append(opts, a.ServerOptions()...)...)
//
// Clients send their token with TokenCredentials (grpc.WithPerRPCCredentials); ClientToken
// reads it from a flag's file, $MIXOPT_TOKEN_FILE or $MIXOPT_TOKEN.
//
// Authenticator.HTTP guards HTTP handlers (the dashboard, /metrics) with the same tokens, as
// a Bearer header or as the password of HTTP Basic auth (a browser's login prompt).
//
// # TLS
//
// ServerTLSConfig builds a server config from a certificate and key, and with a client CA
// requires and verifies client certificates (mutual TLS). ClientTLSConfig builds a client
// config trusting a CA file (or the system roots) and optionally presenting a client
// certificate. Wrap either with google.golang.org/grpc/credentials.NewTLS.
//
// # Registration rate
//
// Limiter is a token bucket; RateLimitUnary applies one to chosen methods (Register) and
// answers ResourceExhausted when it is empty, so a crash-looping fleet of workers cannot
// flood the store with worker records.
package auth
