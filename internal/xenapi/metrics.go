package xenapi

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the client's Prometheus series, registered once per Pool.
type metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	sessions *prometheus.GaugeVec
	logins   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xen_operator_xenapi_calls_total",
			Help: "XenAPI calls by endpoint (the XenHost's namespace/name), method and result code (SUCCESS, a xapi error code, CONNECTION, HTTP_<n>, DECODE).",
		}, []string{"endpoint", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "xen_operator_xenapi_call_duration_seconds",
			Help:    "Duration of XenAPI calls by endpoint and method.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"endpoint", "method"}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "xen_operator_xenapi_sessions_active",
			Help: "XenAPI sessions the operator holds, by endpoint.",
		}, []string{"endpoint"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xen_operator_xenapi_logins_total",
			Help: "XenAPI logins by endpoint, kind (login or relogin) and result code.",
		}, []string{"endpoint", "kind", "code"}),
	}
	if reg != nil {
		m.calls = register(reg, m.calls)
		m.duration = register(reg, m.duration)
		m.sessions = register(reg, m.sessions)
		m.logins = register(reg, m.logins)
	}
	return m
}

// register registers c, or returns the collector already registered under
// the same name (a second Pool in one process shares the series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (m *metrics) observeCall(endpoint, method, code string, d time.Duration) {
	if method == "session.login_with_password" || method == "session.logout" {
		// Counted apart, in logins; the password is never a label.
		m.duration.WithLabelValues(endpoint, method).Observe(d.Seconds())
		return
	}
	m.calls.WithLabelValues(endpoint, method, code).Inc()
	m.duration.WithLabelValues(endpoint, method).Observe(d.Seconds())
}

// forget deletes the per-endpoint series of an endpoint the pool dropped.
func (m *metrics) forget(endpoint string) {
	m.sessions.DeleteLabelValues(endpoint)
}
