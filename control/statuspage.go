package control

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"time"

	"github.com/turnout/turnout/api"
	"github.com/turnout/turnout/state"
)

// statusPageHistory is the number of switches the status page shows.
const statusPageHistory = 50

//go:embed statuspage.html
var statusPageHTML string

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"ms": func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() },
	"pct": func(n, of int) int {
		if of <= 0 {
			return 100
		}
		return min(100, n*100/of)
	},
}).Parse(statusPageHTML))

// statusPageData is what statuspage.html renders.
type statusPageData struct {
	api.Status
	History      []state.Record
	HistoryError string
	Now          time.Time
}

// statusPageRoutes adds the read-only status page (/), its data as JSON
// (/status.json) and turnout's own liveness probe (/healthz) to mux.
func (s *Server) statusPageRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.serveStatusPage)
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(s.sw.Status())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
}

func (s *Server) serveStatusPage(w http.ResponseWriter, r *http.Request) {
	d := statusPageData{Status: s.sw.Status(), Now: time.Now()}
	hist, err := s.sw.History(statusPageHistory)
	if err != nil {
		d.HistoryError = fmt.Sprintf("cannot read the history from %s: %v", s.sw.StatePath(), err)
	}
	d.History = hist
	var buf bytes.Buffer
	if err := statusPage.Execute(&buf, d); err != nil {
		s.logger.Error("cannot render the status page", "error", err)
		http.Error(w, "cannot render the status page; see turnout's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}
