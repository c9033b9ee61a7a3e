package hostnode

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A handler that returns without answering must not answer the implicit
// 200: a client takes a 200 to an upload for "stored".
func TestMustAnswer(t *testing.T) {
	var logged bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logged, nil))}
	for _, tc := range []struct {
		name string
		h    func(http.ResponseWriter)
		code int
	}{
		{"nothing", func(http.ResponseWriter) {}, http.StatusInternalServerError},
		{"headers only", func(w http.ResponseWriter) { w.Header().Set("X-A", "b") }, http.StatusInternalServerError},
		{"informational only", func(w http.ResponseWriter) { w.WriteHeader(http.StatusEarlyHints) }, http.StatusInternalServerError},
		{"created", func(w http.ResponseWriter) { w.WriteHeader(http.StatusCreated) }, http.StatusCreated},
		{"error", func(w http.ResponseWriter) { httpError(w, http.StatusConflict, "fenced") }, http.StatusConflict},
		{"empty body", func(w http.ResponseWriter) { w.Write(nil) }, http.StatusOK},
		{"controller", func(w http.ResponseWriter) {
			// Unwrap reaches the connection's writer.
			if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Second)); err != nil {
				t.Errorf("SetReadDeadline through the guard: %v", err)
			}
			w.WriteHeader(http.StatusNoContent)
		}, http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logged.Reset()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s.mustAnswer(w, r, tc.h)
			}))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/v1/x")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if gotLog := strings.Contains(logged.String(), "without an answer"); gotLog != (tc.code == http.StatusInternalServerError) {
				t.Errorf("logged %q", logged.String())
			}
		})
	}
}
