package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiff-io/skiff/server/apiserver"
	"github.com/skiff-io/skiff/server/controller/podautoscaler"
)

// hpaMetrics is where the leader's HorizontalPodAutoscaler controller
// reads metrics: in process, from this master's metrics store, the same
// answers metrics.k8s.io, custom.metrics.k8s.io and
// external.metrics.k8s.io give.
type hpaMetrics struct {
	resource apiserver.ResourceMetrics
	custom   apiserver.CustomMetrics
}

// hpaMetricsSource is nil on a master without a metrics store (the
// controller does not run there).
func (s *Server) hpaMetricsSource() podautoscaler.Metrics {
	if s.monitoring == nil {
		return nil
	}
	return hpaMetrics{resource: s.apiResourceMetrics(), custom: s.apiCustomMetrics()}
}

func (m hpaMetrics) ResourceMetric(ctx context.Context, res corev1.ResourceName, ns string, sel labels.Selector, container string) (podautoscaler.PodMetrics, time.Time, error) {
	all, err := m.resource.PodMetrics(ctx, ns)
	if err != nil {
		return nil, time.Time{}, err
	}
	out := podautoscaler.PodMetrics{}
	var ts time.Time
	for _, pm := range all {
		if !sel.Matches(labels.Set(pm.Labels)) {
			continue
		}
		var sum int64
		found := false
		for _, c := range pm.Containers {
			if container != "" && c.Name != container {
				continue
			}
			q, ok := c.Usage[res]
			if !ok {
				continue
			}
			sum += q.MilliValue()
			found = true
		}
		if !found {
			continue
		}
		out[pm.Name] = podautoscaler.PodMetric{Timestamp: pm.Timestamp.Time, Window: pm.Window.Duration, Value: sum}
		if ts.IsZero() || pm.Timestamp.Time.Before(ts) {
			ts = pm.Timestamp.Time
		}
	}
	if len(out) == 0 {
		return nil, time.Time{}, errors.New("no metrics returned from resource metrics API")
	}
	return out, ts, nil
}

func (m hpaMetrics) PodsMetric(ctx context.Context, metric, ns string, sel, metricSel labels.Selector) (podautoscaler.PodMetrics, time.Time, error) {
	vals, err := m.custom.PodMetrics(ctx, ns, "*", sel, metric, metricSel)
	if err != nil {
		return nil, time.Time{}, err
	}
	out := podautoscaler.PodMetrics{}
	var ts time.Time
	for _, v := range vals {
		out[v.DescribedObject.Name] = podautoscaler.PodMetric{Timestamp: v.Timestamp.Time, Value: v.Value.MilliValue()}
		if v.WindowSeconds != nil {
			p := out[v.DescribedObject.Name]
			p.Window = time.Duration(*v.WindowSeconds) * time.Second
			out[v.DescribedObject.Name] = p
		}
		ts = v.Timestamp.Time
	}
	if len(out) == 0 {
		return nil, time.Time{}, fmt.Errorf("no values of custom metric %s for the pods", metric)
	}
	return out, ts, nil
}

func (m hpaMetrics) ObjectMetric(ctx context.Context, metric, ns string, ref autoscalingv2.CrossVersionObjectReference, metricSel labels.Selector) (int64, time.Time, error) {
	v, err := m.custom.ObjectMetric(ctx, ns, ref.Kind, ref.Name, metric, metricSel)
	if err != nil {
		return 0, time.Time{}, err
	}
	return v.Value.MilliValue(), v.Timestamp.Time, nil
}

func (m hpaMetrics) ExternalMetric(ctx context.Context, metric, ns string, sel labels.Selector) ([]int64, time.Time, error) {
	vals, err := m.custom.ExternalMetric(ctx, ns, metric, sel)
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(vals) == 0 {
		return nil, time.Time{}, fmt.Errorf("no values of external metric %s", metric)
	}
	out := make([]int64, 0, len(vals))
	for _, v := range vals {
		out = append(out, v.Value.MilliValue())
	}
	return out, vals[0].Timestamp.Time, nil
}
