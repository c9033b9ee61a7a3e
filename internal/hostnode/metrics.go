package hostnode

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the host's Prometheus series, on their own registry.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	storedBytes *prometheus.CounterVec
	readBytes   *prometheus.CounterVec
	used        *prometheus.GaugeVec
	refused     *prometheus.CounterVec
	damaged     prometheus.Counter
	logSize     prometheus.Gauge
	cosigned    *prometheus.GaugeVec
	proofs      prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embassy_host_requests_total", Help: "HTTP requests by method and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "embassy_host_request_seconds", Help: "HTTP request latency by method.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"method"}),
		storedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embassy_host_stored_bytes_total", Help: "Bytes of new objects stored, by guest.",
		}, []string{"guest"}),
		readBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embassy_host_read_bytes_total", Help: "Bytes of objects served, by guest.",
		}, []string{"guest"}),
		used: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "embassy_host_quota_used_bytes", Help: "Bytes stored per guest (counted against its quota).",
		}, []string{"guest"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embassy_host_uploads_refused_total", Help: "Uploads refused, by reason.",
		}, []string{"reason"}),
		damaged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "embassy_host_damaged_objects_total", Help: "Reads that found a stored object damaged.",
		}),
		logSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "embassy_host_log_entries", Help: "Entries in the host's log.",
		}),
		cosigned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "embassy_host_log_cosigned_size", Help: "Log size last cosigned, by witness.",
		}, []string{"witness"}),
		proofs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "embassy_host_proofs_answered_total", Help: "Storage-proof challenges answered.",
		}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.storedBytes, m.readBytes, m.used, m.refused,
		m.damaged, m.logSize, m.cosigned, m.proofs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return mux
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument counts requests and their latency.
func (m *metrics) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		m.requests.WithLabelValues(r.Method, strconv.Itoa(sw.code)).Inc()
		m.duration.WithLabelValues(r.Method).Observe(time.Since(start).Seconds())
	})
}
