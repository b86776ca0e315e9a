package apiserver

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// apiMetrics are kube-apiserver's request metrics, with its names, labels
// and buckets (k8s.io/apiserver/pkg/endpoints/metrics), recorded once per
// request in ServeHTTP. Their labels come from the request info and the
// registry only: never a name or namespace, and a group, version or
// resource the registry does not serve is reported empty, so that a
// client cannot make series up.
type apiMetrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	sizes       *prometheus.HistogramVec
	inflight    *prometheus.GaugeVec
	longRunning *prometheus.GaugeVec
	watchEvents *prometheus.CounterVec
	watchSizes  *prometheus.HistogramVec
}

const component = "apiserver"

func newAPIMetrics(reg prometheus.Registerer) *apiMetrics {
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiserver_request_total",
			Help: "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
		}, []string{"verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "apiserver_request_duration_seconds",
			Help: "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
			Buckets: []float64{0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3,
				4, 5, 6, 8, 10, 15, 20, 30, 45, 60},
		}, []string{"verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"}),
		sizes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiserver_response_sizes",
			Help:    "Response size distribution in bytes for each group, version, verb, resource, subresource, scope and component.",
			Buckets: prometheus.ExponentialBuckets(1000, 10.0, 8),
		}, []string{"verb", "group", "version", "resource", "subresource", "scope", "component"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiserver_current_inflight_requests",
			Help: "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
		}, []string{"request_kind"}),
		longRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiserver_longrunning_requests",
			Help: "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.",
		}, []string{"verb", "group", "version", "resource", "subresource", "scope", "component"}),
		watchEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiserver_watch_events_total",
			Help: "Number of events sent in watch clients",
		}, []string{"group", "version", "resource"}),
		watchSizes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiserver_watch_events_sizes",
			Help:    "Watch event size distribution in bytes",
			Buckets: prometheus.ExponentialBuckets(1024, 2.0, 8),
		}, []string{"group", "version", "resource"}),
	}
	// Both request kinds are reported from the start, as kube-apiserver's.
	m.inflight.WithLabelValues("readOnly")
	m.inflight.WithLabelValues("mutating")
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.sizes, m.inflight, m.longRunning, m.watchEvents, m.watchSizes)
	}
	return m
}

// requestLabels are a request's metric labels.
type requestLabels struct {
	verb, dryRun, group, version, resource, subresource, scope string
}

// labelsOf resolves a request's labels as kube-apiserver reports them:
// the verb in upper case (LIST, WATCH, APPLY, CONNECT for the streaming
// subresources), the scope (resource, namespace, cluster), and only what
// the registry serves.
func (s *APIServer) labelsOf(r *http.Request, info *requestInfo) requestLabels {
	l := requestLabels{dryRun: ""}
	if len(r.URL.Query()["dryRun"]) > 0 {
		l.dryRun = "All"
	}
	if !info.IsResource {
		l.verb = methodVerb(r.Method)
		return l
	}
	kind, ok := s.reg.Lookup(info.Group, info.Version, info.Resource)
	if ok {
		l.group, l.version, l.resource = info.Group, info.Version, info.Resource
		if info.Subresource != "" && (kind.HasSubresource(info.Subresource) || info.Subresource == "proxy") {
			l.subresource = info.Subresource
		}
	}
	switch {
	case info.Name != "":
		l.scope = "resource"
	case info.Namespace != "":
		l.scope = "namespace"
	default:
		l.scope = "cluster"
	}
	switch info.Verb {
	case "get":
		l.verb = "GET"
	case "list":
		l.verb = "LIST"
	case "watch":
		l.verb = "WATCH"
	case "create":
		l.verb = "POST"
	case "update":
		l.verb = "PUT"
	case "patch":
		l.verb = "PATCH"
		if r.Header.Get("Content-Type") == string(types.ApplyPatchType) {
			l.verb = "APPLY"
		}
	case "delete", "deletecollection":
		l.verb = "DELETE"
	default:
		l.verb = methodVerb(r.Method)
	}
	if info.Subresource == registry.SubExec || info.Subresource == registry.SubAttach ||
		info.Subresource == registry.SubPortForward || info.Subresource == "proxy" {
		l.verb = "CONNECT"
	}
	return l
}

// methodVerb is an HTTP method as a verb label; a method kube-apiserver
// does not know is "other", so that a client cannot make series up.
func methodVerb(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}

// begin records a request as in flight (or long-running) and returns the
// function that records its end.
func (m *apiMetrics) begin(s *APIServer, r *http.Request, info *requestInfo, rw *statusRecorder) func() {
	l := s.labelsOf(r, info)
	var gauge prometheus.Gauge
	if info.longRunning() {
		gauge = m.longRunning.WithLabelValues(l.verb, l.group, l.version, l.resource, l.subresource, l.scope, component)
	} else {
		kind := "readOnly"
		if info.mutating() {
			kind = "mutating"
		}
		gauge = m.inflight.WithLabelValues(kind)
	}
	gauge.Inc()
	return func() {
		gauge.Dec()
		code := rw.code
		m.requests.WithLabelValues(l.verb, l.dryRun, l.group, l.version, l.resource, l.subresource, l.scope, component, strconv.Itoa(code)).Inc()
		m.latency.WithLabelValues(l.verb, l.dryRun, l.group, l.version, l.resource, l.subresource, l.scope, component).
			Observe(time.Since(rw.start).Seconds())
		if l.verb == "GET" || l.verb == "LIST" {
			m.sizes.WithLabelValues(l.verb, l.group, l.version, l.resource, l.subresource, l.scope, component).Observe(float64(rw.size))
		}
	}
}

// watchEventMetrics are the counters of one watch's events.
type watchEventMetrics struct {
	events prometheus.Counter
	sizes  prometheus.Observer
}

func (m *apiMetrics) forWatch(kind *registry.Kind) watchEventMetrics {
	g, v, r := kind.GVK.Group, kind.GVK.Version, kind.Resource
	return watchEventMetrics{events: m.watchEvents.WithLabelValues(g, v, r), sizes: m.watchSizes.WithLabelValues(g, v, r)}
}

func (w watchEventMetrics) sent(n int) {
	if w.events == nil {
		return
	}
	w.events.Inc()
	w.sizes.Observe(float64(n))
}

// storageObjects is apiserver_storage_objects{resource}: the objects in
// this master's state by resource ("pods", "deployments.apps"), counted
// from its local state at most every storageCountEvery.
type storageObjects struct {
	store Store
	desc  *prometheus.Desc
	mu    sync.Mutex
	at    time.Time
	last  map[string]int
}

const storageCountEvery = 10 * time.Second

func newStorageObjects(store Store) *storageObjects {
	return &storageObjects{store: store, desc: prometheus.NewDesc("apiserver_storage_objects",
		"Number of stored objects at the time of last check split by kind. In case of a fetching error, the value will be -1.",
		[]string{"resource"}, nil)}
}

func (c *storageObjects) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *storageObjects) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || time.Since(c.at) >= storageCountEvery {
		c.count()
	}
	for res, n := range c.last {
		// The state's "group/resource" is kube's "resource.group".
		if g, r, ok := strings.Cut(res, "/"); ok {
			res = r + "." + g
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), res)
	}
}

// count counts the local state's objects by resource. When the state
// cannot be read, the resources last seen count -1, as kube-apiserver
// reports a fetching error: never a failed scrape, so /metrics stays
// readable on a master whose state is unreadable (skiff_state_corrupt is
// among its metrics).
func (c *storageObjects) count() {
	c.at = time.Now()
	snap, err := c.store.Read(context.Background(), false, 0)
	if err != nil {
		for res := range c.last {
			c.last[res] = -1
		}
		return
	}
	counts := map[string]int{}
	snap.All(func(o *state.Object) bool {
		counts[o.Key.Resource]++
		return true
	})
	c.last = counts
}
