package podautoscaler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
)

// tolerances: no rescale while the usage ratio is within
// [1-scaleDown, 1+scaleUp].
type tolerances struct{ scaleDown, scaleUp float64 }

func (t tolerances) within(ratio float64) bool {
	return ratio >= 1-t.scaleDown && ratio <= 1+t.scaleUp
}

// PodLister lists the pods of a namespace that a selector matches.
type PodLister interface {
	List(namespace string, selector labels.Selector) ([]*corev1.Pod, error)
}

// calculator turns metrics into replica counts with Kubernetes' rules.
type calculator struct {
	metrics Metrics
	pods    PodLister
	// cpuInitializationPeriod: a pod started less than this long ago
	// counts as unready for CPU unless its sample comes after it became
	// ready; initialReadinessDelay: after it, a pod's readiness flipping
	// to false is taken as unready for CPU.
	cpuInitializationPeriod time.Duration
	initialReadinessDelay   time.Duration
	now                     func() time.Time
}

var errNoMetrics = errors.New("did not receive metrics for targeted pods (pods might be unready)")

// resourceReplicas is the replica count for a utilization target of
// resource (percent of the pods' requests), with the utilization measured
// (ignoring unready pods and pods without metrics) and the raw average.
func (c *calculator) resourceReplicas(ctx context.Context, current int32, target int32, resource corev1.ResourceName, tol tolerances,
	namespace string, selector labels.Selector, container string) (int32, int32, int64, time.Time, error) {
	metrics, ts, err := c.metrics.ResourceMetric(ctx, resource, namespace, selector, container)
	if err != nil {
		return 0, 0, 0, time.Time{}, fmt.Errorf("unable to get metrics for resource %s: %w", resource, err)
	}
	pods, err := c.pods.List(namespace, selector)
	if err != nil {
		return 0, 0, 0, time.Time{}, fmt.Errorf("unable to get pods while calculating replica count: %w", err)
	}
	if len(pods) == 0 {
		return 0, 0, 0, time.Time{}, errors.New("no pods returned by selector while calculating replica count")
	}
	ready, unready, missing, ignored := c.groupPods(pods, metrics, resource)
	removePods(metrics, ignored)
	removePods(metrics, unready)
	requests, err := podRequests(pods, container, resource)
	if err != nil {
		return 0, 0, 0, time.Time{}, err
	}
	if len(metrics) == 0 {
		return 0, 0, 0, time.Time{}, errNoMetrics
	}
	ratio, util, raw, err := utilizationRatio(metrics, requests, target)
	if err != nil {
		return 0, 0, 0, time.Time{}, err
	}
	upWithUnready := len(unready) > 0 && ratio > 1
	if !upWithUnready && len(missing) == 0 {
		if tol.within(ratio) {
			return current, util, raw, ts, nil
		}
		return int32(math.Ceil(ratio * float64(ready))), util, raw, ts, nil
	}
	// Fill in what is missing: on a scale down, pods without metrics as
	// using their request (or the target, if higher); on a scale up, as
	// using nothing, and unready pods as using nothing.
	for name := range missing {
		if ratio < 1 {
			fallback := int64(max(100, target))
			metrics[name] = PodMetric{Value: requests[name] * fallback / 100}
		} else {
			metrics[name] = PodMetric{Value: 0}
		}
	}
	if upWithUnready {
		for name := range unready {
			metrics[name] = PodMetric{Value: 0}
		}
	}
	newRatio, _, _, err := utilizationRatio(metrics, requests, target)
	if err != nil {
		return 0, 0, 0, time.Time{}, err
	}
	if tol.within(newRatio) || (ratio < 1 && newRatio > 1) || (ratio > 1 && newRatio < 1) {
		return current, util, raw, ts, nil
	}
	n := int32(math.Ceil(newRatio * float64(len(metrics))))
	if (newRatio < 1 && n > current) || (newRatio > 1 && n < current) {
		return current, util, raw, ts, nil
	}
	return n, util, raw, ts, nil
}

// rawResourceReplicas is the replica count for an average-value target of
// resource (milli-units per pod).
func (c *calculator) rawResourceReplicas(ctx context.Context, current int32, target int64, resource corev1.ResourceName, tol tolerances,
	namespace string, selector labels.Selector, container string) (int32, int64, time.Time, error) {
	metrics, ts, err := c.metrics.ResourceMetric(ctx, resource, namespace, selector, container)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("unable to get metrics for resource %s: %w", resource, err)
	}
	n, usage, err := c.plainReplicas(metrics, current, target, tol, namespace, selector, resource)
	return n, usage, ts, err
}

// podsReplicas is the replica count for a per-pod custom metric target.
func (c *calculator) podsReplicas(ctx context.Context, current int32, target int64, metric string, tol tolerances,
	namespace string, selector, metricSelector labels.Selector) (int32, int64, time.Time, error) {
	metrics, ts, err := c.metrics.PodsMetric(ctx, metric, namespace, selector, metricSelector)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("unable to get metric %s: %w", metric, err)
	}
	n, usage, err := c.plainReplicas(metrics, current, target, tol, namespace, selector, "")
	return n, usage, ts, err
}

// plainReplicas: the average of metrics against target, with the same
// handling of unready pods and missing metrics as utilization.
func (c *calculator) plainReplicas(metrics PodMetrics, current int32, target int64, tol tolerances, namespace string,
	selector labels.Selector, resource corev1.ResourceName) (int32, int64, error) {
	pods, err := c.pods.List(namespace, selector)
	if err != nil {
		return 0, 0, fmt.Errorf("unable to get pods while calculating replica count: %w", err)
	}
	if len(pods) == 0 {
		return 0, 0, errors.New("no pods returned by selector while calculating replica count")
	}
	ready, unready, missing, ignored := c.groupPods(pods, metrics, resource)
	removePods(metrics, ignored)
	removePods(metrics, unready)
	if len(metrics) == 0 {
		return 0, 0, errNoMetrics
	}
	ratio, usage := usageRatio(metrics, target)
	upWithUnready := len(unready) > 0 && ratio > 1
	if !upWithUnready && len(missing) == 0 {
		if tol.within(ratio) {
			return current, usage, nil
		}
		return int32(math.Ceil(ratio * float64(ready))), usage, nil
	}
	for name := range missing {
		if ratio < 1 {
			metrics[name] = PodMetric{Value: target}
		} else {
			metrics[name] = PodMetric{Value: 0}
		}
	}
	if upWithUnready {
		for name := range unready {
			metrics[name] = PodMetric{Value: 0}
		}
	}
	newRatio, _ := usageRatio(metrics, target)
	if tol.within(newRatio) || (ratio < 1 && newRatio > 1) || (ratio > 1 && newRatio < 1) {
		return current, usage, nil
	}
	n := int32(math.Ceil(newRatio * float64(len(metrics))))
	if (newRatio < 1 && n > current) || (newRatio > 1 && n < current) {
		return current, usage, nil
	}
	return n, usage, nil
}

// objectReplicas: one object's metric against a value target.
func (c *calculator) objectReplicas(ctx context.Context, current int32, target int64, metric string, tol tolerances, namespace string,
	ref autoscalingv2.CrossVersionObjectReference, selector, metricSelector labels.Selector) (int32, int64, time.Time, error) {
	usage, ts, err := c.metrics.ObjectMetric(ctx, metric, namespace, ref, metricSelector)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("unable to get metric %s: %s/%s: %w", metric, ref.Kind, ref.Name, err)
	}
	n, err := c.ratioReplicas(current, float64(usage)/float64(target), tol, namespace, selector)
	return n, usage, ts, err
}

// objectPerPodReplicas: one object's metric against a per-pod average.
func (c *calculator) objectPerPodReplicas(ctx context.Context, statusReplicas int32, target int64, metric string, tol tolerances, namespace string,
	ref autoscalingv2.CrossVersionObjectReference, metricSelector labels.Selector) (int32, int64, time.Time, error) {
	usage, ts, err := c.metrics.ObjectMetric(ctx, metric, namespace, ref, metricSelector)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("unable to get metric %s: %s/%s: %w", metric, ref.Kind, ref.Name, err)
	}
	n, avg := perPodReplicas(statusReplicas, usage, target, tol)
	return n, avg, ts, nil
}

// externalReplicas: the sum of an external metric against a value target.
func (c *calculator) externalReplicas(ctx context.Context, current int32, target int64, metric string, tol tolerances, namespace string,
	metricSelector, selector labels.Selector) (int32, int64, time.Time, error) {
	values, ts, err := c.metrics.ExternalMetric(ctx, metric, namespace, metricSelector)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("unable to get external metric %s/%s/%s: %w", namespace, metric, metricSelector, err)
	}
	var usage int64
	for _, v := range values {
		usage += v
	}
	n, err := c.ratioReplicas(current, float64(usage)/float64(target), tol, namespace, selector)
	return n, usage, ts, err
}

// externalPerPodReplicas: the sum of an external metric against a
// per-pod average.
func (c *calculator) externalPerPodReplicas(ctx context.Context, statusReplicas int32, target int64, metric string, tol tolerances,
	namespace string, metricSelector labels.Selector) (int32, int64, time.Time, error) {
	values, ts, err := c.metrics.ExternalMetric(ctx, metric, namespace, metricSelector)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("unable to get external metric %s/%s/%s: %w", namespace, metric, metricSelector, err)
	}
	var usage int64
	for _, v := range values {
		usage += v
	}
	n, avg := perPodReplicas(statusReplicas, usage, target, tol)
	return n, avg, ts, nil
}

// perPodReplicas: usage spread over statusReplicas pods against target
// per pod; returns the count and the average per pod.
func perPodReplicas(statusReplicas int32, usage, target int64, tol tolerances) (int32, int64) {
	n := statusReplicas
	ratio := float64(usage) / (float64(target) * float64(n))
	if !tol.within(ratio) {
		n = int32(math.Ceil(float64(usage) / float64(target)))
	}
	return n, int64(math.Ceil(float64(usage) / float64(statusReplicas)))
}

// ratioReplicas scales the ready pods by ratio (from zero, to ratio).
func (c *calculator) ratioReplicas(current int32, ratio float64, tol tolerances, namespace string, selector labels.Selector) (int32, error) {
	if current == 0 {
		return int32(math.Ceil(ratio)), nil
	}
	if tol.within(ratio) {
		return current, nil
	}
	pods, err := c.pods.List(namespace, selector)
	if err != nil {
		return 0, fmt.Errorf("unable to get pods while calculating replica count: %w", err)
	}
	if len(pods) == 0 {
		return 0, errors.New("no pods returned by selector while calculating replica count")
	}
	ready := 0
	for _, p := range pods {
		if p.Status.Phase == corev1.PodRunning && podReady(p) {
			ready++
		}
	}
	return int32(math.Ceil(ratio * float64(ready))), nil
}

// groupPods sorts pods: ready ones with metrics (counted), unready ones
// (pending; for CPU also those still starting), those without metrics,
// and ignored ones (deleted or failed).
func (c *calculator) groupPods(pods []*corev1.Pod, metrics PodMetrics, resource corev1.ResourceName) (ready int, unready, missing, ignored sets.Set[string]) {
	unready, missing, ignored = sets.New[string](), sets.New[string](), sets.New[string]()
	now := c.now()
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed {
			ignored.Insert(p.Name)
			continue
		}
		if p.Status.Phase == corev1.PodPending {
			unready.Insert(p.Name)
			continue
		}
		m, ok := metrics[p.Name]
		if !ok {
			missing.Insert(p.Name)
			continue
		}
		if resource == corev1.ResourceCPU {
			var cond *corev1.PodCondition
			for i := range p.Status.Conditions {
				if p.Status.Conditions[i].Type == corev1.PodReady {
					cond = &p.Status.Conditions[i]
				}
			}
			isUnready := false
			switch {
			case cond == nil || p.Status.StartTime == nil:
				isUnready = true
			case p.Status.StartTime.Add(c.cpuInitializationPeriod).After(now):
				// Starting: unready, or its sample predates readiness.
				isUnready = cond.Status == corev1.ConditionFalse || m.Timestamp.Before(cond.LastTransitionTime.Add(m.Window))
			default:
				// Started: unready only if it never became ready.
				isUnready = cond.Status == corev1.ConditionFalse && p.Status.StartTime.Add(c.initialReadinessDelay).After(cond.LastTransitionTime.Time)
			}
			if isUnready {
				unready.Insert(p.Name)
				continue
			}
		}
		ready++
	}
	return ready, unready, missing, ignored
}

func removePods(metrics PodMetrics, pods sets.Set[string]) {
	for name := range pods {
		delete(metrics, name)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podRequests is each pod's request of resource (milli-units), summed over
// its containers or of one container.
func podRequests(pods []*corev1.Pod, container string, resource corev1.ResourceName) (map[string]int64, error) {
	out := make(map[string]int64, len(pods))
	for _, p := range pods {
		var sum int64
		found := false
		for _, c := range p.Spec.Containers {
			if container != "" && c.Name != container {
				continue
			}
			q, ok := c.Resources.Requests[resource]
			if !ok {
				return nil, fmt.Errorf("missing request for %s in container %s of Pod %s", resource, c.Name, p.Name)
			}
			sum += q.MilliValue()
			found = true
		}
		if container != "" && !found {
			return nil, fmt.Errorf("container %s not present in pod %s", container, p.Name)
		}
		out[p.Name] = sum
	}
	return out, nil
}

// utilizationRatio is usage over requests against target percent, with
// the utilization (percent) and the raw average usage.
func utilizationRatio(metrics PodMetrics, requests map[string]int64, target int32) (float64, int32, int64, error) {
	var usage, req int64
	n := 0
	for name, m := range metrics {
		r, ok := requests[name]
		if !ok {
			continue
		}
		usage += m.Value
		req += r
		n++
	}
	if req == 0 {
		return 0, 0, 0, errors.New("no metrics returned matched known pods")
	}
	util := int32(usage * 100 / req)
	return float64(util) / float64(target), util, usage / int64(n), nil
}

// usageRatio is the average of metrics against target, and the average.
func usageRatio(metrics PodMetrics, target int64) (float64, int64) {
	var sum int64
	for _, m := range metrics {
		sum += m.Value
	}
	avg := sum / int64(len(metrics))
	return float64(avg) / float64(target), avg
}
