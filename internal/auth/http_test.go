package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHTTP(t *testing.T) {
	a := NewAuthenticator(mustTokens(t))
	h := a.HTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := IdentityFrom(r.Context())
		w.Write([]byte(id.Role.String()))
	}), RoleViewer)
	for _, tc := range []struct {
		name   string
		set    func(r *http.Request)
		code   int
		body   string
		wwwAut bool
	}{
		{"no credentials", func(*http.Request) {}, 401, "", true},
		{"unknown bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nobody-0123456789abcdef") }, 401, "", true},
		{"viewer bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+viewerTok) }, 200, "viewer", false},
		{"admin basic", func(r *http.Request) { r.SetBasicAuth("anyone", adminTok) }, 200, "admin", false},
		{"worker basic", func(r *http.Request) { r.SetBasicAuth("", workerTok) }, 403, "", false},
		{"empty basic", func(r *http.Request) { r.SetBasicAuth("x", "") }, 401, "", true},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		tc.set(req)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, rec.Code, tc.code)
		}
		if tc.body != "" && rec.Body.String() != tc.body {
			t.Errorf("%s: body %q, want %q", tc.name, rec.Body.String(), tc.body)
		}
		if got := rec.Header().Get("WWW-Authenticate") != ""; got != tc.wwwAut {
			t.Errorf("%s: WWW-Authenticate present %v, want %v", tc.name, got, tc.wwwAut)
		}
	}
}
