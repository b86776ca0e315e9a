package podautoscaler

import (
	"context"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// PodMetric is one pod's value of a metric, in milli-units (millicores
// for CPU), measured at Timestamp over Window.
type PodMetric struct {
	Timestamp time.Time
	Window    time.Duration
	Value     int64
}

// PodMetrics are the values of a metric by pod name.
type PodMetrics map[string]PodMetric

// Metrics is where the controller reads the metrics it scales on; the
// server answers from its metrics store (resource metrics as
// metrics.k8s.io serves them, custom and external metrics as
// custom.metrics.k8s.io and external.metrics.k8s.io do). Values are
// milli-units.
type Metrics interface {
	// ResourceMetric is the usage of resource by the pods of namespace
	// that selector matches: summed over their containers, or of the
	// named container only.
	ResourceMetric(ctx context.Context, resource corev1.ResourceName, namespace string, selector labels.Selector, container string) (PodMetrics, time.Time, error)
	// PodsMetric is a custom metric of the selected pods.
	PodsMetric(ctx context.Context, metric, namespace string, selector, metricSelector labels.Selector) (PodMetrics, time.Time, error)
	// ObjectMetric is a custom metric describing one object.
	ObjectMetric(ctx context.Context, metric, namespace string, ref autoscalingv2.CrossVersionObjectReference, metricSelector labels.Selector) (int64, time.Time, error)
	// ExternalMetric is the values of an external metric.
	ExternalMetric(ctx context.Context, metric, namespace string, selector labels.Selector) ([]int64, time.Time, error)
}
