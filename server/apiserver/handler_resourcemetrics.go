package apiserver

import (
	"context"
	"net/http"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// ResourceMetrics answers metrics.k8s.io (NodeMetrics, PodMetrics) from the
// master's metrics store; the server backs it.
type ResourceMetrics interface {
	NodeMetrics(ctx context.Context) ([]metricsv1beta1.NodeMetrics, error)
	// PodMetrics of one namespace ("": all).
	PodMetrics(ctx context.Context, namespace string) ([]metricsv1beta1.PodMetrics, error)
}

// serveResourceMetrics answers get and list of nodes.metrics.k8s.io and
// pods.metrics.k8s.io (label and field selectors apply to the objects'
// metadata). Nothing is stored.
func (s *APIServer) serveResourceMetrics(req *request) {
	if s.cfg.ResourceMetrics == nil {
		s.writeError(req.w, req.r, apierrors.NewServiceUnavailable("this master keeps no metrics store (--disable-metrics)"))
		return
	}
	if req.info.Verb != "get" && req.info.Verb != "list" {
		s.writeError(req.w, req.r, methodNotSupported(req))
		return
	}
	opts, err := parseListOptions(req.r, req.kind, false)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	ctx := req.r.Context()
	var items []runtime.Object
	if req.kind.Namespaced {
		all, err := s.cfg.ResourceMetrics.PodMetrics(ctx, req.info.Namespace)
		if err != nil {
			s.writeError(req.w, req.r, apierrors.NewInternalError(err))
			return
		}
		for i := range all {
			items = append(items, &all[i])
		}
	} else {
		all, err := s.cfg.ResourceMetrics.NodeMetrics(ctx)
		if err != nil {
			s.writeError(req.w, req.r, apierrors.NewInternalError(err))
			return
		}
		for i := range all {
			items = append(items, &all[i])
		}
	}
	if req.info.Verb == "get" {
		i := slices.IndexFunc(items, func(o runtime.Object) bool { return mustAccessor(o).GetName() == req.info.Name })
		if i < 0 {
			s.writeError(req.w, req.r, apierrors.NewNotFound(req.kind.GroupResource(), req.info.Name))
			return
		}
		items[i].GetObjectKind().SetGroupVersionKind(req.kind.GVK)
		s.writeObject(req, http.StatusOK, items[i])
		return
	}
	out := items[:0]
	for _, o := range items {
		if opts.matches(req.kind, o) {
			out = append(out, o)
		}
	}
	s.writeList(req, out, metav1.ListMeta{})
}
