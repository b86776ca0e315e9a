package registry

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	custommetricsv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	externalmetricsv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// NodeMetrics and PodMetrics (metrics.k8s.io/v1beta1, metrics-server's
// API) are read-only and not stored: the API server answers them from the
// master's metrics store (server/metrics).
func nodeMetricsKind() *Kind {
	return &Kind{
		GVK:       metricsv1beta1.SchemeGroupVersion.WithKind("NodeMetrics"),
		Resource:  "nodes",
		Virtual:   true,
		Verbs:     []string{"get", "list"},
		newObject: func() runtime.Object { return &metricsv1beta1.NodeMetrics{} },
		newList:   func() runtime.Object { return &metricsv1beta1.NodeMetricsList{} },
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("CPU", "string", "CPU usage (cores)", 0),
			col("Memory", "string", "Memory working set", 0),
			col("Window", "string", "Interval the CPU rate is measured over", 0),
		},
		cells: func(obj runtime.Object, _ time.Time) []any {
			m := obj.(*metricsv1beta1.NodeMetrics)
			return []any{m.Name, m.Usage.Cpu().String(), m.Usage.Memory().String(), m.Window.Duration.String()}
		},
	}
}

func podMetricsKind() *Kind {
	return &Kind{
		GVK:        metricsv1beta1.SchemeGroupVersion.WithKind("PodMetrics"),
		Resource:   "pods",
		Namespaced: true,
		Virtual:    true,
		Verbs:      []string{"get", "list"},
		newObject:  func() runtime.Object { return &metricsv1beta1.PodMetrics{} },
		newList:    func() runtime.Object { return &metricsv1beta1.PodMetricsList{} },
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Containers", "integer", "Containers measured", 0),
			col("Window", "string", "Interval the CPU rate is measured over", 0),
		},
		cells: func(obj runtime.Object, _ time.Time) []any {
			m := obj.(*metricsv1beta1.PodMetrics)
			return []any{m.Name, int64(len(m.Containers)), m.Window.Duration.String()}
		},
	}
}

// The custom and external metrics APIs (custom.metrics.k8s.io/v1beta2,
// external.metrics.k8s.io/v1beta1, prometheus-adapter's) are answered by
// the API server from the metrics store (apiserver/handler_custommetrics.go);
// these entries only make discovery list the groups: pods' custom metrics
// and external metrics by name, read with get.
func customMetricsKind() *Kind {
	return &Kind{
		GVK:        custommetricsv1beta2.SchemeGroupVersion.WithKind("MetricValueList"),
		Resource:   "pods/*",
		Singular:   "",
		Namespaced: true,
		Virtual:    true,
		Verbs:      []string{"get"},
		newObject:  func() runtime.Object { return &custommetricsv1beta2.MetricValueList{} },
		newList:    func() runtime.Object { return &custommetricsv1beta2.MetricValueList{} },
		columns:    []metav1.TableColumnDefinition{nameColumn},
		cells:      func(runtime.Object, time.Time) []any { return []any{""} },
	}
}

func externalMetricsKind() *Kind {
	return &Kind{
		GVK:        externalmetricsv1beta1.SchemeGroupVersion.WithKind("ExternalMetricValueList"),
		Resource:   "*",
		Namespaced: true,
		Virtual:    true,
		Verbs:      []string{"get"},
		newObject:  func() runtime.Object { return &externalmetricsv1beta1.ExternalMetricValueList{} },
		newList:    func() runtime.Object { return &externalmetricsv1beta1.ExternalMetricValueList{} },
		columns:    []metav1.TableColumnDefinition{nameColumn},
		cells:      func(runtime.Object, time.Time) []any { return []any{""} },
	}
}
