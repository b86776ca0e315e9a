package apiserver

import (
	"context"
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	custommetricsv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	externalmetricsv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
)

// CustomMetrics answers custom.metrics.k8s.io/v1beta2 and
// external.metrics.k8s.io/v1beta1 (what prometheus-adapter serves) from
// the master's metrics store; the server backs it.
type CustomMetrics interface {
	// PodMetrics is metric of the pods of namespace named name ("*": all
	// that selector matches).
	PodMetrics(ctx context.Context, namespace, name string, selector labels.Selector, metric string, metricSelector labels.Selector) ([]custommetricsv1beta2.MetricValue, error)
	// ObjectMetric is metric of one object of kind (its resource's kind).
	ObjectMetric(ctx context.Context, namespace, kind, name, metric string, metricSelector labels.Selector) (*custommetricsv1beta2.MetricValue, error)
	// ExternalMetric is the values of an external metric.
	ExternalMetric(ctx context.Context, namespace, metric string, selector labels.Selector) ([]externalmetricsv1beta1.ExternalMetricValue, error)
}

// ErrMetricNotFound: the metric has no value (404).
var ErrMetricNotFound = errors.New("metric not found")

// isMetricsGroup reports whether the request is for the custom or
// external metrics API.
func isMetricsGroup(info *requestInfo) bool {
	return info.Group == custommetricsv1beta2.SchemeGroupVersion.Group || info.Group == externalmetricsv1beta1.SchemeGroupVersion.Group
}

// serveCustomMetrics answers
//
//	GET /apis/custom.metrics.k8s.io/v1beta2/namespaces/NS/pods/NAME|*/METRIC
//	GET /apis/custom.metrics.k8s.io/v1beta2/namespaces/NS/RESOURCE/NAME/METRIC
//	GET /apis/custom.metrics.k8s.io/v1beta2/namespaces/NAME/metrics/METRIC (the namespace itself)
//	GET /apis/external.metrics.k8s.io/v1beta1/namespaces/NS/METRIC
//
// with labelSelector (pods; external series) and metricLabelSelector.
func (s *APIServer) serveCustomMetrics(req *request) {
	info := req.info
	external := info.Group == externalmetricsv1beta1.SchemeGroupVersion.Group
	if (external && info.Version != "v1beta1") || (!external && info.Version != "v1beta2") {
		s.writeError(req.w, req.r, notFoundPath())
		return
	}
	if info.Verb != "get" && info.Verb != "list" {
		s.writeError(req.w, req.r, apierrors.NewMethodNotSupported(schema.GroupResource{Group: info.Group, Resource: info.Resource}, info.Verb))
		return
	}
	if s.cfg.CustomMetrics == nil {
		s.writeError(req.w, req.r, apierrors.NewServiceUnavailable("this master keeps no metrics store (--disable-metrics)"))
		return
	}
	q := req.r.URL.Query()
	parse := func(name string) (labels.Selector, bool) {
		sel, err := labels.Parse(q.Get(name))
		if err != nil {
			s.writeError(req.w, req.r, apierrors.NewBadRequest(name+": "+err.Error()))
			return nil, false
		}
		return sel, true
	}
	ctx := req.r.Context()
	gr := schema.GroupResource{Group: info.Group, Resource: info.Resource}
	if external {
		// The metric is the resource: namespaces/NS/METRIC.
		if info.Namespace == "" || info.Name != "" {
			s.writeError(req.w, req.r, notFoundPath())
			return
		}
		sel, ok := parse("labelSelector")
		if !ok {
			return
		}
		items, err := s.cfg.CustomMetrics.ExternalMetric(ctx, info.Namespace, info.Resource, sel)
		if err != nil {
			s.writeMetricsError(req, gr, err)
			return
		}
		list := &externalmetricsv1beta1.ExternalMetricValueList{Items: items}
		list.TypeMeta = metav1.TypeMeta{Kind: "ExternalMetricValueList", APIVersion: externalmetricsv1beta1.SchemeGroupVersion.String()}
		writeJSON(req.w, http.StatusOK, list)
		return
	}
	metricSel, ok := parse("metricLabelSelector")
	if !ok {
		return
	}
	metric, resource, name := info.Subresource, info.Resource, info.Name
	if info.Resource == "metrics" && info.Namespace != "" {
		// namespaces/NAME/metrics/METRIC: the namespace's own metric.
		metric, resource, name = info.Name, "namespaces", info.Namespace
	}
	if metric == "" || name == "" {
		s.writeError(req.w, req.r, notFoundPath())
		return
	}
	var items []custommetricsv1beta2.MetricValue
	if resource == "pods" {
		sel, ok := parse("labelSelector")
		if !ok {
			return
		}
		var err error
		items, err = s.cfg.CustomMetrics.PodMetrics(ctx, info.Namespace, name, sel, metric, metricSel)
		if err != nil {
			s.writeMetricsError(req, gr, err)
			return
		}
		if name != "*" && len(items) == 0 {
			s.writeMetricsError(req, gr, ErrMetricNotFound)
			return
		}
	} else {
		kind := kindOfResource(s, resource)
		v, err := s.cfg.CustomMetrics.ObjectMetric(ctx, info.Namespace, kind, name, metric, metricSel)
		if err != nil {
			s.writeMetricsError(req, gr, err)
			return
		}
		items = append(items, *v)
	}
	list := &custommetricsv1beta2.MetricValueList{Items: items}
	list.TypeMeta = metav1.TypeMeta{Kind: "MetricValueList", APIVersion: custommetricsv1beta2.SchemeGroupVersion.String()}
	writeJSON(req.w, http.StatusOK, list)
}

// kindOfResource maps a plural resource to its kind ("services" to
// Service) through the registry; unknown resources are used as they are.
func kindOfResource(s *APIServer, resource string) string {
	for _, k := range s.reg.Kinds() {
		if k.Resource == resource && !k.Virtual {
			return k.GVK.Kind
		}
	}
	return resource
}

func (s *APIServer) writeMetricsError(req *request, gr schema.GroupResource, err error) {
	if errors.Is(err, ErrMetricNotFound) {
		s.writeError(req.w, req.r, apierrors.NewNotFound(gr, req.info.Subresource))
		return
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s.writeError(req.w, req.r, err)
		return
	}
	s.writeError(req.w, req.r, apierrors.NewInternalError(err))
}
