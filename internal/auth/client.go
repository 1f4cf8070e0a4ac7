package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
)

// Environment variables ClientToken reads when no token file is given.
const (
	EnvTokenFile = "MIXOPT_TOKEN_FILE"
	EnvToken     = "MIXOPT_TOKEN"
)

// ClientToken returns the token a client should send: the first line of path when path is
// set, else of $MIXOPT_TOKEN_FILE, else $MIXOPT_TOKEN; "" when none is set. Prefer files:
// an environment variable is visible in /proc/<pid>/environ to the same user and often ends
// up in shell history.
func ClientToken(path string) (string, error) {
	if path == "" {
		path = os.Getenv(EnvTokenFile)
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		tok, _, _ := strings.Cut(string(b), "\n")
		tok = strings.TrimSpace(tok)
		if tok == "" {
			return "", fmt.Errorf("token file %s is empty", path)
		}
		return tok, nil
	}
	return strings.TrimSpace(os.Getenv(EnvToken)), nil
}

// TokenCredentials sends a bearer token with every call; use it with
// grpc.WithPerRPCCredentials.
type TokenCredentials struct {
	token      string
	requireTLS bool
}

var _ credentials.PerRPCCredentials = TokenCredentials{}

// NewTokenCredentials returns credentials sending token. With requireTLS, gRPC refuses to
// send it over a connection without transport security; pass false only for loopback
// addresses, where nobody can read the wire.
func NewTokenCredentials(token string, requireTLS bool) (TokenCredentials, error) {
	if token == "" {
		return TokenCredentials{}, errors.New("empty token")
	}
	return TokenCredentials{token: token, requireTLS: requireTLS}, nil
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c TokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + c.token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (c TokenCredentials) RequireTransportSecurity() bool { return c.requireTLS }
