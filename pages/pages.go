// Package pages renders the maintenance page: the built-in HTML page
// embedded in the binary, an operator's HTML template that overrides it, and
// the JSON and plain-text variants chosen by the request's Accept header.
// It only writes responses: deciding when a page is due belongs to the switcher.
package pages

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultRetryAfter is the Retry-After used when Data.RetryAfter is not positive;
// it matches the default of maintenance.retry_after.
const DefaultRetryAfter = 5 * time.Second

// Data is what a page shows.
type Data struct {
	// Status is the HTTP status: 503 maintenance, 502 bad gateway, 504 gateway
	// timeout, or the app's own 5xx when intercepted. Default (0): 503.
	Status int
	// Message is the operator's message. Default (""): a sentence that fits Status.
	Message string
	// RetryAfter sets the Retry-After header (whole seconds, rounded up, at least 1)
	// and the page's countdown. Default (0 or less): DefaultRetryAfter.
	RetryAfter time.Duration
	// RequestID is sent as X-Request-Id and shown on the page when set.
	RequestID string
}

// view is what templates see: {{.Status}}, {{.Message}}, {{.RetryAfter}} (whole
// seconds) and {{.RequestID}}. It is the documented contract for operator templates.
type view struct {
	Status     int
	Message    string
	RetryAfter int
	RequestID  string
}

// jsonBody is the JSON variant of the page.
type jsonBody struct {
	Status     int    `json:"status"`
	Error      string `json:"error"`
	Message    string `json:"message"`
	RetryAfter int    `json:"retry_after"`
	RequestID  string `json:"request_id"`
}

//go:embed maintenance.html
var builtinHTML string

// builtin is parsed once for the whole process; html/template is safe for
// concurrent execution.
var builtin = template.Must(template.New("maintenance.html").Parse(builtinHTML))

// Renderer writes maintenance pages; safe for concurrent use.
type Renderer struct {
	page *template.Template
}

// New returns a Renderer that serves the built-in page.
func New() *Renderer {
	return &Renderer{page: builtin}
}

// Load returns a Renderer that serves the HTML template in the file at path instead
// of the built-in page (JSON and plain text are unchanged). The template may use
// {{.Message}}, {{.RetryAfter}} (whole seconds), {{.Status}} and {{.RequestID}}.
// It is parsed and executed once with sample data here, so a template that cannot
// be read, parsed or executed is an error naming the file before it is ever served.
func Load(path string) (*Renderer, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("maintenance page: %w; fix maintenance.page or remove it to use the built-in page", err)
	}
	page, err := template.New(filepath.Base(path)).Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("maintenance page %s does not parse: %w", path, err)
	}
	sample := view{Status: http.StatusServiceUnavailable, Message: defaultMessage(http.StatusServiceUnavailable), RetryAfter: 5, RequestID: "sample-request-id"}
	var buf bytes.Buffer
	if err := page.Execute(&buf, sample); err != nil {
		return nil, fmt.Errorf("maintenance page %s fails to render (it may use only .Message, .RetryAfter, .Status and .RequestID): %w", path, err)
	}
	return &Renderer{page: page}, nil
}

// Write answers req with the page for d: status d.Status, headers Retry-After,
// Cache-Control: no-store, Content-Type, Content-Length and X-Request-Id (when
// d.RequestID is set), and a body in the format the client prefers (see negotiate).
// A HEAD request gets the headers only. The body is rendered in full before
// anything is sent, so a failing operator template never sends half a page: it
// falls back to the built-in page. req may be nil (treated as a GET without Accept).
func (r *Renderer) Write(w http.ResponseWriter, req *http.Request, d Data) {
	v := newView(d)
	var accept []string
	head := false
	if req != nil {
		accept = req.Header.Values("Accept")
		head = req.Method == http.MethodHead
	}

	buf := getBuffer()
	defer putBuffer(buf)
	var contentType string
	switch negotiate(accept) {
	case formatJSON:
		contentType = "application/json; charset=utf-8"
		// Encoding these field types cannot fail.
		_ = json.NewEncoder(buf).Encode(jsonBody{Status: v.Status, Error: errorCode(v.Status), Message: v.Message, RetryAfter: v.RetryAfter, RequestID: v.RequestID})
	case formatText:
		contentType = "text/plain; charset=utf-8"
		writeText(buf, v)
	default:
		contentType = "text/html; charset=utf-8"
		if err := r.page.Execute(buf, v); err != nil {
			buf.Reset()
			// The built-in page is known to execute for every view.
			_ = builtin.Execute(buf, v)
		}
	}

	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Retry-After", strconv.Itoa(v.RetryAfter))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if v.RequestID != "" {
		h.Set("X-Request-Id", v.RequestID)
	}
	w.WriteHeader(v.Status)
	if !head {
		_, _ = w.Write(buf.Bytes())
	}
}

// newView applies Data's defaults.
func newView(d Data) view {
	v := view{Status: d.Status, Message: d.Message, RequestID: d.RequestID}
	if v.Status == 0 {
		v.Status = http.StatusServiceUnavailable
	}
	if v.Message == "" {
		v.Message = defaultMessage(v.Status)
	}
	retry := d.RetryAfter
	if retry <= 0 {
		retry = DefaultRetryAfter
	}
	v.RetryAfter = max(1, int((retry+time.Second-1)/time.Second))
	return v
}

// kinds gives each status the page knows its JSON "error" code and the
// honest sentence shown when the operator gave no message; any other status
// is an upstream error.
var kinds = map[int]struct{ code, message string }{
	http.StatusServiceUnavailable: {"maintenance", "This site is briefly unavailable. It will be back shortly, and this page will take you there by itself."},
	http.StatusBadGateway:         {"bad_gateway", "The application behind this site is not answering right now. This page will try again by itself."},
	http.StatusGatewayTimeout:     {"gateway_timeout", "The application behind this site took too long to answer. This page will try again by itself."},
}

// kindOf is status's entry of kinds.
func kindOf(status int) (code, message string) {
	if k, ok := kinds[status]; ok {
		return k.code, k.message
	}
	return "upstream_error", "The application behind this site ran into an error. This page will try again by itself."
}

// defaultMessage is the sentence for status when the operator gave none.
func defaultMessage(status int) string { _, m := kindOf(status); return m }

// errorCode is the "error" field of the JSON variant.
func errorCode(status int) string { c, _ := kindOf(status); return c }

// writeText renders the plain-text variant.
func writeText(buf *bytes.Buffer, v view) {
	buf.WriteString(strconv.Itoa(v.Status))
	buf.WriteByte(' ')
	buf.WriteString(http.StatusText(v.Status))
	buf.WriteString("\n\n")
	buf.WriteString(v.Message)
	buf.WriteString("\n\nRetry in ")
	buf.WriteString(strconv.Itoa(v.RetryAfter))
	buf.WriteString(" s.\n")
	if v.RequestID != "" {
		buf.WriteString("Request ID: ")
		buf.WriteString(v.RequestID)
		buf.WriteByte('\n')
	}
}

// maxPooledBuffer keeps one unusually large page from pinning memory in the pool.
const maxPooledBuffer = 64 << 10

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer { return buffers.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	buffers.Put(b)
}

type format int

const (
	formatHTML format = iota
	formatJSON
	formatText
)

// negotiate picks the body format from the Accept header values:
//   - JSON when application/json is listed with a higher q than text/html, or
//     without text/html (so "application/json, */*" from API clients gets JSON);
//   - plain text when text/plain is acceptable and neither text/html, text/* nor
//     */* is;
//   - HTML otherwise, including no Accept header and "*/*" (curl, browsers).
func negotiate(accept []string) format {
	qJSON, qHTML, qWild, qPlain := -1.0, -1.0, -1.0, -1.0
	for _, value := range accept {
		for rest := value; rest != ""; {
			var part string
			part, rest, _ = strings.Cut(rest, ",")
			mediaType, params, _ := strings.Cut(part, ";")
			q := quality(params)
			switch strings.ToLower(strings.TrimSpace(mediaType)) {
			case "application/json":
				qJSON = max(qJSON, q)
			case "text/html":
				qHTML = max(qHTML, q)
			case "text/*", "*/*":
				qWild = max(qWild, q)
			case "text/plain":
				qPlain = max(qPlain, q)
			}
		}
	}
	switch {
	case qJSON > 0 && qJSON > qHTML:
		return formatJSON
	case qPlain > 0 && qHTML <= 0 && qWild <= 0:
		return formatText
	default:
		return formatHTML
	}
}

// quality returns the q parameter of a media range's parameters, 1 when absent
// or unreadable (a lenient reading: the client did list the type).
func quality(params string) float64 {
	for rest := params; rest != ""; {
		var p string
		p, rest, _ = strings.Cut(rest, ";")
		key, val, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(key), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return 1
		}
		return min(max(q, 0), 1)
	}
	return 1
}
