package server

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	custommetricsv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	externalmetricsv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/apiserver"
	"github.com/skiff-io/skiff/server/metrics"
)

// metricsRulesConfigMap holds the custom and external metrics' PromQL
// rules: each data key is an external metric's name, or "pods." and a
// pods metric's name; its value the expression (docs/monitoring.md).
const (
	metricsRulesNamespace = "skiff-system"
	metricsRulesName      = "metrics-rules"
	podsRulePrefix        = "pods."
)

// defaultMetricsRules are the rules the leader writes when the ConfigMap
// is absent, for operators to see and edit: per-pod CPU (cores) and
// memory from the kubelets' cAdvisor series, and per-pod request rate
// from a workload's own http_requests_total if the master scrapes it.
var defaultMetricsRules = map[string]string{
	podsRulePrefix + "cpu_usage_cores":          `rate(container_cpu_usage_seconds_total{container!=""}[1m])`,
	podsRulePrefix + "memory_working_set_bytes": `container_memory_working_set_bytes{container!=""}`,
	podsRulePrefix + "http_requests_per_second": `rate(http_requests_total[1m])`,
}

// ensureMetricsRules creates skiff-system/metrics-rules with the default
// rules unless it exists (an operator's edits are kept; one deleted comes
// back at the next leadership change).
func (s *Server) ensureMetricsRules(ctx context.Context) error {
	if err := s.ensureNamespace(ctx, metricsRulesNamespace); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: metricsRulesName, Namespace: metricsRulesNamespace}, Data: defaultMetricsRules}
	created, err := s.createIfAbsent(ctx, state.Key{Resource: "configmaps", Namespace: metricsRulesNamespace, Name: metricsRulesName},
		&cm.ObjectMeta, metav1.NewTime(time.Now().UTC().Truncate(time.Second)), cm)
	if created {
		s.log.Info("created the default metrics rules", "configmap", metricsRulesNamespace+"/"+metricsRulesName)
	}
	return err
}

// customMetrics answers custom.metrics.k8s.io and external.metrics.k8s.io
// from the store (server/metrics.CustomMetrics), with the pods and the
// rules ConfigMap read from this master's state.
type customMetrics struct {
	s *Server
	m *metrics.CustomMetrics
}

func (s *Server) apiCustomMetrics() apiserver.CustomMetrics {
	if s.monitoring == nil {
		return nil
	}
	return customMetrics{s: s, m: metrics.NewCustomMetrics(s.monitoring.api, s.cfg.Metrics.ScrapeInterval)}
}

func (c customMetrics) PodMetrics(ctx context.Context, ns, name string, sel labels.Selector, metric string, metricSel labels.Selector) ([]custommetricsv1beta2.MetricValue, error) {
	var pods []string
	c.s.fsm.Read().List("pods", ns, "", func(o *state.Object) bool {
		var p struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if json.Unmarshal(o.Data, &p) == nil && (name == "*" || p.Metadata.Name == name) && sel.Matches(labels.Set(p.Metadata.Labels)) {
			pods = append(pods, p.Metadata.Name)
		}
		return true
	})
	rule, err := c.rule(podsRulePrefix + metric)
	if err != nil {
		return nil, err
	}
	vals, err := c.m.PodValues(ctx, ns, pods, metric, rule, metricSel)
	if err != nil {
		return nil, err
	}
	window := int64(c.m.Window().Seconds())
	out := []custommetricsv1beta2.MetricValue{}
	for _, p := range pods {
		v, ok := vals[p]
		if !ok {
			continue
		}
		out = append(out, custommetricsv1beta2.MetricValue{
			DescribedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: p, APIVersion: "/v1"},
			Metric:          custommetricsv1beta2.MetricIdentifier{Name: metric, Selector: selectorOf(metricSel)},
			Timestamp:       metrics.Time(v.Timestamp), WindowSeconds: &window, Value: metrics.Quantity(v.Value),
		})
	}
	return out, nil
}

func (c customMetrics) ObjectMetric(ctx context.Context, ns, kind, name, metric string, metricSel labels.Selector) (*custommetricsv1beta2.MetricValue, error) {
	v, err := c.m.ObjectValue(ctx, ns, kind, name, metric, metricSel)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("%w: %s of %s %s/%s", apiserver.ErrMetricNotFound, metric, kind, ns, name)
	}
	return &custommetricsv1beta2.MetricValue{
		DescribedObject: corev1.ObjectReference{Kind: kind, Namespace: ns, Name: name},
		Metric:          custommetricsv1beta2.MetricIdentifier{Name: metric, Selector: selectorOf(metricSel)},
		Timestamp:       metrics.Time(v.Timestamp), Value: metrics.Quantity(v.Value),
	}, nil
}

func (c customMetrics) ExternalMetric(ctx context.Context, ns, metric string, sel labels.Selector) ([]externalmetricsv1beta1.ExternalMetricValue, error) {
	rule, err := c.rule(metric)
	if err != nil {
		return nil, err
	}
	vals, err := c.m.ExternalValues(ctx, ns, metric, rule, sel)
	if err != nil {
		return nil, err
	}
	out := []externalmetricsv1beta1.ExternalMetricValue{}
	for _, v := range vals {
		delete(v.Labels, "__name__")
		out = append(out, externalmetricsv1beta1.ExternalMetricValue{MetricName: metric, MetricLabels: v.Labels,
			Timestamp: metrics.Time(v.Timestamp), Value: metrics.Quantity(v.Value)})
	}
	return out, nil
}

// rule is the rules ConfigMap's value at key ("" when absent), read from
// this master's state on every request.
func (c customMetrics) rule(key string) (string, error) {
	o := c.s.fsm.Read().Get(state.Key{Resource: "configmaps", Namespace: metricsRulesNamespace, Name: metricsRulesName})
	if o == nil {
		return "", nil
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(o.Data, &cm); err != nil {
		return "", fmt.Errorf("ConfigMap %s/%s: %w", metricsRulesNamespace, metricsRulesName, err)
	}
	return cm.Data[key], nil
}

func selectorOf(sel labels.Selector) *metav1.LabelSelector {
	if sel == nil || sel.Empty() {
		return nil
	}
	ls, err := metav1.ParseToLabelSelector(sel.String())
	if err != nil {
		return nil
	}
	return ls
}
