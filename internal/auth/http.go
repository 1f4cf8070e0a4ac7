package auth

import (
	"net/http"
	"slices"
	"strings"
)

// HTTP guards an HTTP handler (the dashboard, /metrics) with the same tokens: a request
// carries "Authorization: Bearer <token>" (Prometheus' authorization.credentials) or HTTP
// Basic auth with the token as the password (a browser's own login prompt; the user name
// is ignored). Admin tokens always pass; otherwise the token's role must be one of roles
// (typically RoleViewer). No or an unknown token answers 401, a known token of another
// role 403.
func (a *Authenticator) HTTP(next http.Handler, roles ...Role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := ""
		if _, pass, ok := r.BasicAuth(); ok {
			tok = pass
		} else if scheme, rest, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "bearer") {
			tok = strings.TrimSpace(rest)
		}
		id, ok := a.tokens.Load().Lookup(tok)
		if tok == "" || !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="mixopt", charset="UTF-8"`)
			http.Error(w, "a viewer or admin token is needed (HTTP Basic password or Bearer)", http.StatusUnauthorized)
			return
		}
		if id.Role != RoleAdmin && !slices.Contains(roles, id.Role) {
			http.Error(w, "role "+id.Role.String()+" may not read this", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), id)))
	})
}
