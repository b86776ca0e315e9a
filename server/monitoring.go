package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/apiserver"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/metrics"
	"github.com/skiff-io/skiff/server/registry"
)

// MetricsConfig configures the master's metrics store (server/metrics,
// docs/monitoring.md); zero values take the package's defaults.
type MetricsConfig struct {
	// Disable: no store, no scraping, no query API.
	Disable         bool
	Retention       time.Duration
	RetentionSize   int64
	ScrapeInterval  time.Duration
	ScrapeTimeout   time.Duration
	SampleLimit     int
	QueryTimeout    time.Duration
	QueryMaxSamples int
	// RemoteWrite: Prometheus remote-write to external stores (none
	// without URLs); every master sends, adding the external label
	// skiff_master=<its node name>.
	RemoteWrite metrics.RemoteWriteOptions
}

// replicaLabel names the master in the series it remote-writes, so that a
// receiver deduplicates the masters' copies (Mimir/Cortex
// ha_replica_label, Thanos --query.replica-label).
const replicaLabel = "skiff_master"

// monitoring is this master's metrics store, its scraper and query API.
type monitoring struct {
	store   *metrics.Store
	scraper *metrics.Scraper
	api     *metrics.API
	// reg holds the store's and scraper's own metrics, served in /metrics.
	reg *prometheus.Registry
	// nodes decodes Node objects for the kubelet targets.
	nodes *registry.Kind
}

func (c *Config) metricsDir() string { return filepath.Join(c.DataDir, "metrics") }

// hollowLabel marks the nodes of `skiff agent --hollow-nodes`, which serve
// no kubelet HTTP endpoints.
const hollowLabel = "skiff.io/hollow"

// setupMonitoring opens the metrics store (replaying its WAL) and prepares
// the scraper and the query API. Witnesses keep none.
func (s *Server) setupMonitoring(kubelets http.RoundTripper) error {
	if s.cfg.Metrics.Disable || s.cfg.Witness {
		return nil
	}
	nodes, ok := registry.New().Lookup("", "v1", "nodes")
	if !ok {
		return fmt.Errorf("metrics: nodes are not served")
	}
	m := &monitoring{reg: prometheus.NewRegistry(), nodes: nodes}
	size := s.cfg.Metrics.RetentionSize
	if size == 0 {
		size = -1 // --metrics-retention-size 0: no bound
	}
	var err error
	m.store, err = metrics.OpenStore(s.cfg.metricsDir(), metrics.StoreOptions{
		Retention: s.cfg.Metrics.Retention, RetentionSize: size,
		Registerer: m.reg, Logger: s.cfg.Logger,
	})
	if err != nil {
		return err
	}
	if rw := s.cfg.Metrics.RemoteWrite; len(rw.URLs) > 0 {
		ext := map[string]string{}
		for k, v := range rw.ExternalLabels {
			ext[k] = v
		}
		ext[replicaLabel] = s.cfg.NodeName
		rw.ExternalLabels = ext
		if err := m.store.EnableRemoteWrite(rw, m.reg, s.cfg.Logger); err != nil {
			_ = m.store.Close()
			return err
		}
	}
	kubeletClient := &http.Client{Transport: kubelets}
	m.scraper = metrics.NewScraper(m.store, metrics.ScraperOptions{
		Targets:     func() []metrics.Target { return s.scrapeTargets(kubeletClient) },
		Interval:    s.cfg.Metrics.ScrapeInterval,
		Timeout:     s.cfg.Metrics.ScrapeTimeout,
		SampleLimit: s.cfg.Metrics.SampleLimit,
		Registerer:  m.reg,
		Logger:      s.cfg.Logger,
	})
	m.api = metrics.NewAPI(m.store, metrics.APIOptions{
		Timeout: s.cfg.Metrics.QueryTimeout, MaxSamples: s.cfg.Metrics.QueryMaxSamples,
		ExternalLabels: s.cfg.Metrics.RemoteWrite.ExternalLabels,
		Registerer:     m.reg, Logger: s.cfg.Logger,
	})
	s.monitoring = m
	return nil
}

// runScraper scrapes until the master stops.
func (s *Server) runScraper() {
	defer s.wg.Done()
	if s.monitoring == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-s.shutdownCh; cancel() }()
	s.monitoring.scraper.Run(ctx)
}

// closeMonitoring closes the store after the scraper and the API stopped.
func (s *Server) closeMonitoring() {
	if s.monitoring == nil {
		return
	}
	if err := s.monitoring.store.Close(); err != nil {
		s.log.Warn("close the metrics store", "err", err)
	}
}

// metricsGatherer is the store's and scraper's own metrics (none without
// a store).
func (s *Server) metricsGatherer() prometheus.Gatherer {
	if s.monitoring == nil {
		return prometheus.Gatherers{}
	}
	return s.monitoring.reg
}

// scrapeTargets: every master's /metrics (from the masters' records) and
// every node's kubelet endpoints (hollow nodes excepted), listed afresh
// each round from this master's state.
func (s *Server) scrapeTargets(kubelet *http.Client) []metrics.Target {
	var out []metrics.Target
	for _, m := range s.listMembers() {
		if m.Witness || m.APIURL == "" {
			continue
		}
		u, err := url.Parse(m.APIURL)
		if err != nil {
			continue
		}
		out = append(out, metrics.Target{Job: metrics.JobMaster, Instance: u.Host, Node: m.Name,
			URL: m.APIURL + "/metrics", Client: s.peerClient})
	}
	kind := s.monitoring.nodes
	s.fsm.Read().List(kind.StorageResource(), "", "", func(o *state.Object) bool {
		obj, err := kind.Decode(o)
		if err != nil {
			return true
		}
		node := obj.(*corev1.Node)
		if node.Labels[hollowLabel] == "true" {
			return true
		}
		host := nodeHost(node)
		if host == "" {
			return true
		}
		port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
		if port == 0 {
			port = 10250
		}
		instance := net.JoinHostPort(host, strconv.Itoa(port))
		for _, t := range []struct{ job, path string }{
			{metrics.JobKubelet, "/metrics"}, {metrics.JobCadvisor, "/metrics/cadvisor"}, {metrics.JobResource, "/metrics/resource"},
		} {
			out = append(out, metrics.Target{Job: t.job, Instance: instance, Node: node.Name,
				URL: "https://" + instance + t.path, Client: kubelet})
		}
		return true
	})
	return out
}

// nodeHost is a node's InternalIP, else ExternalIP, else Hostname (as the
// API server reaches its kubelet).
func nodeHost(node *corev1.Node) string {
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == t {
				return a.Address
			}
		}
	}
	return ""
}

// prometheusHandler serves the Prometheus HTTP query API at /prometheus/
// to users allowed "get" on the non-resource URL (RBAC nonResourceURLs
// /prometheus/*; the system:monitoring group and cluster admins are). A
// POST of a query (Grafana's default) is a read, authorized as get.
func (s *Server) prometheusHandler() http.Handler {
	var api http.Handler = http.NotFoundHandler()
	if s.monitoring != nil {
		api = http.StripPrefix("/prometheus", s.monitoring.api)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.authn.Authenticate(r)
		if err != nil {
			writeStatus(w, apierrors.NewUnauthorized("Unauthorized"))
			return
		}
		if !u.InGroup(auth.GroupSkiffServers) {
			if allowed, _ := s.authz.Authorize(u, auth.Attributes{Verb: "get", Path: r.URL.Path}); !allowed {
				writeStatus(w, apierrors.NewForbidden(schema.GroupResource{}, "",
					fmt.Errorf("User %q cannot get path %q", u.Name, r.URL.Path)))
				return
			}
		}
		api.ServeHTTP(w, r)
	})
}

// resourceMetrics answers metrics.k8s.io from the store, with the labels
// of the Node and Pod objects (kubectl top -l); metrics of pods no longer
// in the state are left out.
type resourceMetrics struct {
	s *Server
	m *metrics.ResourceMetrics
}

func (r resourceMetrics) NodeMetrics(ctx context.Context) ([]metricsv1beta1.NodeMetrics, error) {
	all, err := r.m.NodeMetrics(ctx)
	if err != nil {
		return nil, err
	}
	snap := r.s.fsm.Read()
	out := all[:0]
	for _, nm := range all {
		o := snap.Get(state.Key{Resource: "nodes", Name: nm.Name})
		if o == nil {
			continue
		}
		var meta struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(o.Data, &meta); err == nil {
			nm.Labels = meta.Metadata.Labels
		}
		out = append(out, nm)
	}
	return out, nil
}

func (r resourceMetrics) PodMetrics(ctx context.Context, namespace string) ([]metricsv1beta1.PodMetrics, error) {
	all, err := r.m.PodMetrics(ctx, namespace)
	if err != nil {
		return nil, err
	}
	snap := r.s.fsm.Read()
	out := all[:0]
	for _, pm := range all {
		o := snap.Get(state.Key{Resource: "pods", Namespace: pm.Namespace, Name: pm.Name})
		if o == nil {
			continue
		}
		var meta struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(o.Data, &meta); err == nil {
			pm.Labels = meta.Metadata.Labels
		}
		out = append(out, pm)
	}
	return out, nil
}

// apiResourceMetrics is what the API server answers metrics.k8s.io with
// (nil without a store: 503).
func (s *Server) apiResourceMetrics() apiserver.ResourceMetrics {
	if s.monitoring == nil {
		return nil
	}
	return resourceMetrics{s: s, m: metrics.NewResourceMetrics(s.monitoring.api, s.cfg.Metrics.ScrapeInterval)}
}
