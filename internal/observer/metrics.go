package observer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names; docs/metrics.md documents them with their labels (a contract: dashboards and alerts use them).
const (
	MetricShutdowns        = "lastcall_shutdowns_total"
	MetricShutdownDuration = "lastcall_shutdown_duration_seconds"
	MetricMissedPods       = "lastcall_observer_missed_pods_total"
)

// durationBuckets resolve 1 s to 10 min (celery's 600 s drain): the kubelet's timestamps have one-second
// precision, so finer buckets would only show rounding.
var durationBuckets = []float64{1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 450, 600, 900}

type metrics struct {
	shutdowns *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	missed    prometheus.Counter
	// workloadLabels false leaves namespace, workload_kind and workload empty (the label set stays the same,
	// so dashboards and alerts keep working with fewer series).
	workloadLabels bool
}

func newMetrics(reg prometheus.Registerer, workloadLabels bool) *metrics {
	m := &metrics{
		shutdowns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricShutdowns,
			Help: "Containers of lastcall-managed pods that terminated while their pod was deleted, by outcome (exited, exited-nonzero, killed, oom, unknown).",
		}, []string{"namespace", "workload_kind", "workload", "container", "profile", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricShutdownDuration,
			Help:    "Time from the start of a pod's deletion (deletionTimestamp - grace period) to each container's finishedAt.",
			Buckets: durationBuckets,
		}, []string{"namespace", "workload_kind", "workload", "container", "profile"}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricMissedPods,
			Help: "Managed pods that disappeared while the observer's watch was down: their shutdowns are not known.",
		}),
		workloadLabels: workloadLabels,
	}
	if reg != nil {
		reg.MustRegister(m.shutdowns, m.duration, m.missed)
	}
	return m
}

func (m *metrics) record(namespace string, w Workload, profile string, s Shutdown) {
	ns, kind, name := namespace, w.Kind, w.Name
	if !m.workloadLabels {
		ns, kind, name = "", "", ""
	}
	m.shutdowns.WithLabelValues(ns, kind, name, s.Container, profile, string(s.Outcome)).Inc()
	if s.HasDuration {
		m.duration.WithLabelValues(ns, kind, name, s.Container, profile).Observe(s.Duration.Seconds())
	}
}
