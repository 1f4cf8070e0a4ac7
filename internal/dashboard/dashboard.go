// Package dashboard serves mixopt's read-only web page: the studies, a study's trials
// table, loss curves by scale, the best objective so far against compute spent, and the
// recommended mixture with its interval. The page is hand-written HTML, CSS and JavaScript
// drawing inline SVG, embedded in the binary: no CDN, no build step, works offline.
//
// The page reads JSON from the same handler, which reads a Source. *scheduler.Scheduler
// satisfies Source as it is; tests use a fake. Mount the handler under any prefix:
//
//	mux.Handle("/", dashboard.Handler(sched))                                  // at the root
//	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", dashboard.Handler(sched)))
//
// Routes (GET and HEAD only; the page uses relative URLs, so any prefix works):
//
//	/                         the page (index.html, app.js, style.css)
//	/api/studies              every study's summary
//	/api/studies/{id}         one study: summary, trials, curves, progress
//	/api/workers              the registered workers
//
// The handler only reads, but what it shows is study data: serve it on a loopback or
// otherwise protected address, or behind an authenticating middleware (auth.HTTP).
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"strconv"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Source is what the dashboard reads: the scheduler's read methods, with their signatures,
// so a *scheduler.Scheduler can be passed directly.
type Source interface {
	ListStudies(ctx context.Context) ([]*pb.StudyStatus, error)
	Trials(ctx context.Context, studyID uint64, state pb.TrialState, scale string) ([]*pb.Trial, error)
	Trial(ctx context.Context, id uint64) (*pb.Trial, []*pb.CurvePoint, error)
	Workers(ctx context.Context) ([]*pb.Worker, error)
}

//go:embed static
var staticFS embed.FS

// Limits on one study's answer, so that a study with thousands of trials stays a page the
// browser can draw: curves of the most recent MaxCurves trials, each thinned to at most
// MaxCurvePoints points (the last point always kept).
const (
	MaxCurves      = 400
	MaxCurvePoints = 200
)

// Handler returns the dashboard's http.Handler over src.
func Handler(src Source) http.Handler {
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	h := &handler{src: src}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/studies", h.studies)
	mux.HandleFunc("GET /api/studies/{id}", h.study)
	mux.HandleFunc("GET /api/workers", h.workers)
	mux.Handle("GET /", http.FileServerFS(static))
	return securityHeaders(mux)
}

type handler struct{ src Source }

// securityHeaders keeps the page to its own assets (no inline script, no framing), so data
// shown in it — study names, failure reasons — cannot become script.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

func (h *handler) studies(w http.ResponseWriter, r *http.Request) {
	sts, err := h.src.ListStudies(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]studyJSON, 0, len(sts))
	for _, st := range sts {
		if st.GetStudy() != nil {
			out = append(out, studyView(st))
		}
	}
	writeJSON(w, out)
}

func (h *handler) study(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		http.Error(w, "study id must be a positive integer", http.StatusBadRequest)
		return
	}
	// Source has no single-study read; the list is what the page shows anyway.
	sts, err := h.src.ListStudies(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	var st *pb.StudyStatus
	for _, s := range sts {
		if s.GetStudy().GetId() == id {
			st = s
		}
	}
	if st == nil {
		http.Error(w, "study "+strconv.FormatUint(id, 10)+" not found", http.StatusNotFound)
		return
	}
	trials, err := h.src.Trials(r.Context(), id, pb.TrialState_TRIAL_STATE_UNSPECIFIED, "")
	if err != nil {
		writeError(w, err)
		return
	}
	d, err := detail(r.Context(), h.src, st, trials)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, d)
}

func (h *handler) workers(w http.ResponseWriter, r *http.Request) {
	ws, err := h.src.Workers(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]workerJSON, 0, len(ws))
	for _, wk := range ws {
		out = append(out, workerView(wk))
	}
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// Live data: never cache.
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusServiceUnavailable
	}
	http.Error(w, err.Error(), code)
}
