package podautoscaler

import (
	"context"
	"errors"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// replicasForMetrics computes the proposal of every metric and keeps the
// largest, with the metrics' statuses. It returns -1 and an error when
// no metric (or not enough, for a scale down) could be computed.
func (c *Controller) replicasForMetrics(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, sc *autoscalingv1.Scale) (int32, string, []autoscalingv2.MetricStatus, error) {
	if sc.Status.Selector == "" {
		c.recorder.Event(hpa, corev1.EventTypeWarning, "SelectorRequired", "selector is required")
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "InvalidSelector", "the HPA target's scale is missing a selector")
		return -1, "", nil, errors.New("selector is required")
	}
	selector, err := labels.Parse(sc.Status.Selector)
	if err != nil {
		c.recorder.Event(hpa, corev1.EventTypeWarning, "InvalidSelector", err.Error())
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "InvalidSelector", "the HPA target's pod selector could not be parsed: %v", err)
		return -1, "", nil, fmt.Errorf("couldn't convert selector into a corresponding internal selector object: %w", err)
	}
	statuses := make([]autoscalingv2.MetricStatus, len(hpa.Spec.Metrics))
	var replicas int32
	var name string
	invalid := 0
	var firstErr error
	var firstReason, firstMsg string
	for i, spec := range hpa.Spec.Metrics {
		n, mname, reason, err := c.replicasForMetric(ctx, hpa, spec, sc, selector, &statuses[i])
		if err != nil {
			if invalid == 0 {
				firstErr, firstReason = err, reason
				firstMsg = fmt.Sprintf("the HPA was unable to compute the replica count: %v", err)
			}
			invalid++
			continue
		}
		if replicas == 0 || n > replicas {
			replicas, name = n, mname
		}
	}
	if invalid >= len(hpa.Spec.Metrics) || (invalid > 0 && replicas < sc.Spec.Replicas) {
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, firstReason, "%s", firstMsg)
		return -1, "", statuses, fmt.Errorf("invalid metrics (%d invalid out of %d), first error is: %w", invalid, len(hpa.Spec.Metrics), firstErr)
	}
	setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from %s", name)
	return replicas, name, statuses, nil
}

// replicasForMetric computes one metric's proposal and fills its status;
// on error it returns the condition reason and records events.
func (c *Controller) replicasForMetric(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, spec autoscalingv2.MetricSpec,
	sc *autoscalingv1.Scale, selector labels.Selector, status *autoscalingv2.MetricStatus) (int32, string, string, error) {
	current, statusReplicas := sc.Spec.Replicas, sc.Status.Replicas
	ns := hpa.Namespace
	tol := c.tolerances(hpa, current)
	fail := func(reason string, err error) (int32, string, string, error) {
		c.recorder.Event(hpa, corev1.EventTypeWarning, reason, err.Error())
		c.recorder.Eventf(hpa, corev1.EventTypeWarning, "FailedComputeMetricsReplicas", "invalid metrics (1 invalid out of %d), first error is: %v", len(hpa.Spec.Metrics), err)
		return 0, "", reason, err
	}
	switch spec.Type {
	case autoscalingv2.ResourceMetricSourceType, autoscalingv2.ContainerResourceMetricSourceType:
		var res corev1.ResourceName
		var target autoscalingv2.MetricTarget
		container, reason, kind := "", "FailedGetResourceMetric", "resource"
		if spec.Type == autoscalingv2.ResourceMetricSourceType {
			if spec.Resource == nil {
				return fail(reason, errors.New("metric spec has no resource"))
			}
			res, target = spec.Resource.Name, spec.Resource.Target
		} else {
			if spec.ContainerResource == nil {
				return fail("FailedGetContainerResourceMetric", errors.New("metric spec has no container resource"))
			}
			res, target, container = spec.ContainerResource.Name, spec.ContainerResource.Target, spec.ContainerResource.Container
			reason, kind = "FailedGetContainerResourceMetric", "container resource"
		}
		var value autoscalingv2.MetricValueStatus
		var n int32
		var mname string
		switch {
		case target.AverageValue != nil:
			r, usage, _, err := c.calc.rawResourceReplicas(ctx, current, target.AverageValue.MilliValue(), res, tol, ns, selector, container)
			if err != nil {
				return fail(reason, fmt.Errorf("failed to get %s usage: %w", res, err))
			}
			n, mname = r, fmt.Sprintf("%s %s", res, kind)
			value.AverageValue = resource.NewMilliQuantity(usage, resource.DecimalSI)
		case target.AverageUtilization != nil:
			r, util, raw, _, err := c.calc.resourceReplicas(ctx, current, *target.AverageUtilization, res, tol, ns, selector, container)
			if err != nil {
				return fail(reason, fmt.Errorf("failed to get %s utilization: %w", res, err))
			}
			n, mname = r, fmt.Sprintf("%s %s utilization (percentage of request)", res, kind)
			value.AverageUtilization, value.AverageValue = &util, resource.NewMilliQuantity(raw, resource.DecimalSI)
		default:
			return fail(reason, errors.New("invalid resource metric source: neither an average utilization target nor an average value target was set"))
		}
		if spec.Type == autoscalingv2.ResourceMetricSourceType {
			*status = autoscalingv2.MetricStatus{Type: spec.Type, Resource: &autoscalingv2.ResourceMetricStatus{Name: res, Current: value}}
		} else {
			*status = autoscalingv2.MetricStatus{Type: spec.Type, ContainerResource: &autoscalingv2.ContainerResourceMetricStatus{Name: res, Container: container, Current: value}}
		}
		return n, mname, "", nil
	case autoscalingv2.PodsMetricSourceType:
		m := spec.Pods
		if m == nil || m.Target.AverageValue == nil {
			return fail("FailedGetPodsMetric", errors.New("pods metric needs an average value target"))
		}
		msel, err := metricSelector(m.Metric.Selector)
		if err != nil {
			return fail("FailedGetPodsMetric", err)
		}
		n, usage, _, err := c.calc.podsReplicas(ctx, current, m.Target.AverageValue.MilliValue(), m.Metric.Name, tol, ns, selector, msel)
		if err != nil {
			return fail("FailedGetPodsMetric", fmt.Errorf("failed to get pods metric value: %w", err))
		}
		*status = autoscalingv2.MetricStatus{Type: spec.Type, Pods: &autoscalingv2.PodsMetricStatus{Metric: m.Metric,
			Current: autoscalingv2.MetricValueStatus{AverageValue: resource.NewMilliQuantity(usage, resource.DecimalSI)}}}
		return n, "pods metric " + m.Metric.Name, "", nil
	case autoscalingv2.ObjectMetricSourceType:
		m := spec.Object
		if m == nil {
			return fail("FailedGetObjectMetric", errors.New("metric spec has no object"))
		}
		msel, err := metricSelector(m.Metric.Selector)
		if err != nil {
			return fail("FailedGetObjectMetric", err)
		}
		var n int32
		var usage int64
		cur := autoscalingv2.MetricValueStatus{}
		switch {
		case m.Target.Type == autoscalingv2.ValueMetricType && m.Target.Value != nil:
			n, usage, _, err = c.calc.objectReplicas(ctx, current, m.Target.Value.MilliValue(), m.Metric.Name, tol, ns, m.DescribedObject, selector, msel)
			cur.Value = resource.NewMilliQuantity(usage, resource.DecimalSI)
		case m.Target.Type == autoscalingv2.AverageValueMetricType && m.Target.AverageValue != nil:
			n, usage, _, err = c.calc.objectPerPodReplicas(ctx, statusReplicas, m.Target.AverageValue.MilliValue(), m.Metric.Name, tol, ns, m.DescribedObject, msel)
			cur.AverageValue = resource.NewMilliQuantity(usage, resource.DecimalSI)
		default:
			err = errors.New("invalid object metric source: neither a value target nor an average value target was set")
		}
		if err != nil {
			return fail("FailedGetObjectMetric", fmt.Errorf("failed to get object metric value: %w", err))
		}
		*status = autoscalingv2.MetricStatus{Type: spec.Type, Object: &autoscalingv2.ObjectMetricStatus{Metric: m.Metric, DescribedObject: m.DescribedObject, Current: cur}}
		return n, fmt.Sprintf("%s metric %s", m.DescribedObject.Kind, m.Metric.Name), "", nil
	case autoscalingv2.ExternalMetricSourceType:
		m := spec.External
		if m == nil {
			return fail("FailedGetExternalMetric", errors.New("metric spec has no external"))
		}
		msel, err := metricSelector(m.Metric.Selector)
		if err != nil {
			return fail("FailedGetExternalMetric", err)
		}
		var n int32
		var usage int64
		cur := autoscalingv2.MetricValueStatus{}
		switch {
		case m.Target.AverageValue != nil:
			n, usage, _, err = c.calc.externalPerPodReplicas(ctx, statusReplicas, m.Target.AverageValue.MilliValue(), m.Metric.Name, tol, ns, msel)
			cur.AverageValue = resource.NewMilliQuantity(usage, resource.DecimalSI)
		case m.Target.Value != nil:
			n, usage, _, err = c.calc.externalReplicas(ctx, current, m.Target.Value.MilliValue(), m.Metric.Name, tol, ns, msel, selector)
			cur.Value = resource.NewMilliQuantity(usage, resource.DecimalSI)
		default:
			err = errors.New("invalid external metric source: neither a value target nor an average value target was set")
		}
		if err != nil {
			return fail("FailedGetExternalMetric", fmt.Errorf("failed to get external metric value: %w", err))
		}
		*status = autoscalingv2.MetricStatus{Type: spec.Type, External: &autoscalingv2.ExternalMetricStatus{Metric: m.Metric, Current: cur}}
		return n, fmt.Sprintf("external metric %s(%+v)", m.Metric.Name, m.Metric.Selector), "", nil
	}
	return fail("InvalidMetricSourceType", fmt.Errorf("unknown metric source type %q", spec.Type))
}

// tolerances are the HPA's, or the controller's for what it leaves unset.
func (c *Controller) tolerances(hpa *autoscalingv2.HorizontalPodAutoscaler, _ int32) tolerances {
	t := tolerances{c.o.Tolerance, c.o.Tolerance}
	if b := hpa.Spec.Behavior; b != nil {
		if b.ScaleDown != nil && b.ScaleDown.Tolerance != nil {
			t.scaleDown = b.ScaleDown.Tolerance.AsApproximateFloat64()
		}
		if b.ScaleUp != nil && b.ScaleUp.Tolerance != nil {
			t.scaleUp = b.ScaleUp.Tolerance.AsApproximateFloat64()
		}
	}
	return t
}

func metricSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return nil, fmt.Errorf("invalid metric selector: %w", err)
	}
	return sel, nil
}
