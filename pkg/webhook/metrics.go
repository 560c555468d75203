package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Admission results, the "result" label of lastcall_admissions_total.
const (
	ResultInjected = "injected"
	// ResultObserved: an observe-mode pod, only labelled for the shutdown observer.
	ResultObserved  = "observed"
	ResultUnchanged = "unchanged"
	ResultSkipped   = "skipped"
	ResultDenied    = "denied"
	ResultError     = "error"
)

// Metrics are the webhook's Prometheus metrics. A nil *Metrics records nothing (tests, the CLI).
type Metrics struct {
	admissions *prometheus.CounterVec
	injections *prometheus.CounterVec
	latency    prometheus.Histogram
}

// NewMetrics creates and registers the metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastcall_admissions_total",
			Help: "Pod admission requests by result (injected, observed, unchanged, skipped, denied, error) and reason.",
		}, []string{"result", "reason"}),
		injections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lastcall_injections_total",
			Help: "Containers given a graceful shutdown, by profile.",
		}, []string{"profile"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lastcall_admission_duration_seconds",
			Help: "Time spent handling one admission request, decode to response.",
			// The bar is p99 <= 2 ms; buckets resolve the sub-millisecond range.
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1},
		}),
	}
	reg.MustRegister(m.admissions, m.injections, m.latency)
	return m
}

func (m *Metrics) observe(result, reason string, d time.Duration) {
	if m == nil {
		return
	}
	m.admissions.WithLabelValues(result, reason).Inc()
	m.latency.Observe(d.Seconds())
}

func (m *Metrics) injected(profile string) {
	if m == nil {
		return
	}
	m.injections.WithLabelValues(profile).Inc()
}
