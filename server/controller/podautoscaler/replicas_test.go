package podautoscaler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// fakeMetrics is a fake metrics source: fixed values per pod, object and
// external metric, as the metrics APIs would answer.
type fakeMetrics struct {
	pods     PodMetrics
	object   int64
	external []int64
	err      error
}

func (f *fakeMetrics) copyPods() PodMetrics {
	out := PodMetrics{}
	for k, v := range f.pods {
		out[k] = v
	}
	return out
}

func (f *fakeMetrics) ResourceMetric(context.Context, corev1.ResourceName, string, labels.Selector, string) (PodMetrics, time.Time, error) {
	return f.copyPods(), t0, f.err
}

func (f *fakeMetrics) PodsMetric(context.Context, string, string, labels.Selector, labels.Selector) (PodMetrics, time.Time, error) {
	return f.copyPods(), t0, f.err
}

func (f *fakeMetrics) ObjectMetric(context.Context, string, string, autoscalingv2.CrossVersionObjectReference, labels.Selector) (int64, time.Time, error) {
	return f.object, t0, f.err
}

func (f *fakeMetrics) ExternalMetric(context.Context, string, string, labels.Selector) ([]int64, time.Time, error) {
	return f.external, t0, f.err
}

// fakePods lists fixed pods.
type fakePods []*corev1.Pod

func (f fakePods) List(string, labels.Selector) ([]*corev1.Pod, error) { return f, nil }

// podSpec describes one test pod: readiness, CPU request (millicores) and
// metric value (-1: no metric).
type podSpec struct {
	ready   bool
	request int64
	value   int64
	phase   corev1.PodPhase
	deleted bool
}

// setup builds pods started 10 minutes before t0 (past the CPU
// initialization period) and their metrics, sampled at t0.
func setup(specs ...podSpec) (*calculator, *fakeMetrics) {
	var pods fakePods
	m := &fakeMetrics{pods: PodMetrics{}}
	start := metav1.NewTime(t0.Add(-10 * time.Minute))
	for i, s := range specs {
		name := fmt.Sprintf("p%d", i)
		status := corev1.ConditionFalse
		if s.ready {
			status = corev1.ConditionTrue
		}
		phase := s.phase
		if phase == "" {
			phase = corev1.PodRunning
		}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(s.request, resource.DecimalSI)}}}}},
			Status: corev1.PodStatus{Phase: phase, StartTime: &start, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status,
				LastTransitionTime: metav1.NewTime(start.Add(10 * time.Second))}}}}
		if s.deleted {
			p.DeletionTimestamp = &start
		}
		pods = append(pods, p)
		if s.value >= 0 {
			m.pods[name] = PodMetric{Timestamp: t0, Window: 30 * time.Second, Value: s.value}
		}
	}
	c := &calculator{metrics: m, pods: pods, cpuInitializationPeriod: 5 * time.Minute, initialReadinessDelay: 30 * time.Second,
		now: func() time.Time { return t0 }}
	return c, m
}

func ready(request, value int64) podSpec { return podSpec{ready: true, request: request, value: value} }
func unready(request, value int64) podSpec {
	return podSpec{ready: false, request: request, value: value}
}

var tol = tolerances{0.1, 0.1}

// The cases of kube-controller-manager's replica calculator tests, on CPU
// utilization.
func TestResourceReplicas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		current  int32
		target   int32
		pods     []podSpec
		want     int32
		wantUtil int32
	}{
		{"scale up", 3, 30, []podSpec{ready(1000, 300), ready(1000, 500), ready(1000, 700)}, 5, 50},
		{"scale up, unready pod counted as 0", 3, 30, []podSpec{unready(1000, 300), ready(1000, 500), ready(1000, 700)}, 4, 60},
		{"scale up, all but one unready", 3, 30, []podSpec{unready(1000, 100), unready(1000, 100), ready(1000, 700)}, 3, 70},
		{"scale down", 5, 50, []podSpec{ready(1000, 100), ready(1000, 300), ready(1000, 500), ready(1000, 250), ready(1000, 250)}, 3, 28},
		{"scale down ignores unready", 5, 50, []podSpec{ready(1000, 100), ready(1000, 300), unready(1000, 500), unready(1000, 1000), ready(1000, 250)}, 2, 21},
		{"within tolerance", 3, 100, []podSpec{ready(900, 1010), ready(1000, 1030), ready(1100, 1020)}, 3, 102},
		{"deleted and failed pods ignored", 2, 50, []podSpec{ready(1000, 1000), ready(1000, 1000),
			{ready: true, request: 1000, value: 0, deleted: true}, {ready: true, request: 1000, value: 0, phase: corev1.PodFailed}}, 4, 100},
		{"pending pod is unready", 2, 50, []podSpec{ready(1000, 1000), {request: 1000, value: -1, phase: corev1.PodPending}}, 2, 100},
		// Missing metrics: on a scale down assumed at their request, on a
		// scale up at zero.
		{"missing, scale down", 4, 50, []podSpec{ready(1000, 100), ready(1000, 100), ready(1000, 100), ready(1000, -1)}, 3, 10},
		{"missing, scale up", 4, 50, []podSpec{ready(1000, 900), ready(1000, 900), ready(1000, 900), ready(1000, -1)}, 6, 90},
		// Missing metrics that flip the direction: no change.
		{"missing flips direction", 4, 50, []podSpec{ready(1000, 400), ready(1000, 400), ready(1000, 400), ready(1000, -1)}, 4, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := setup(tc.pods...)
			got, util, _, _, err := c.resourceReplicas(context.Background(), tc.current, tc.target, corev1.ResourceCPU, tol, "default", labels.Everything(), "")
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || util != tc.wantUtil {
				t.Fatalf("replicas %d utilization %d%%, want %d and %d%%", got, util, tc.want, tc.wantUtil)
			}
		})
	}
}

// A pod still in its CPU initialization period counts only once its
// sample postdates readiness.
func TestResourceReplicasStartingPods(t *testing.T) {
	c, m := setup(ready(1000, 900), ready(1000, 900))
	pods := c.pods.(fakePods)
	start := metav1.NewTime(t0.Add(-time.Minute))
	pods[1].Status.StartTime = &start
	pods[1].Status.Conditions[0].LastTransitionTime = metav1.NewTime(t0.Add(-10 * time.Second)) // ready 10s ago, window 30s
	got, util, _, _, err := c.resourceReplicas(context.Background(), 2, 50, corev1.ResourceCPU, tol, "default", labels.Everything(), "")
	if err != nil {
		t.Fatal(err)
	}
	// p1 is unready: the scale up counts it at 0: (900+0)/2000 = 45%.
	if util != 90 || got != 2 {
		t.Fatalf("replicas %d utilization %d, want 2 (unready pod at 0 makes 45%%, within a flip) and 90", got, util)
	}
	pods[1].Status.Conditions[0].LastTransitionTime = metav1.NewTime(t0.Add(-time.Minute))
	m.pods["p1"] = PodMetric{Timestamp: t0, Window: 30 * time.Second, Value: 900}
	if got, _, _, _, _ := c.resourceReplicas(context.Background(), 2, 50, corev1.ResourceCPU, tol, "default", labels.Everything(), ""); got != 4 {
		t.Fatalf("a sample after readiness counts: %d, want 4", got)
	}
}

func TestResourceReplicasErrors(t *testing.T) {
	c, m := setup(ready(1000, -1), ready(1000, -1))
	if _, _, _, _, err := c.resourceReplicas(context.Background(), 2, 50, corev1.ResourceCPU, tol, "default", labels.Everything(), ""); !errors.Is(err, errNoMetrics) {
		t.Fatalf("no metrics: %v", err)
	}
	c, _ = setup(ready(1000, 100))
	c.pods.(fakePods)[0].Spec.Containers[0].Resources.Requests = nil
	if _, _, _, _, err := c.resourceReplicas(context.Background(), 1, 50, corev1.ResourceCPU, tol, "default", labels.Everything(), ""); err == nil ||
		!strings.Contains(err.Error(), "missing request for cpu in container app of Pod p0") {
		t.Fatalf("missing request: %v", err)
	}
	c, m = setup(ready(1000, 100))
	m.err = errors.New("store down")
	if _, _, _, _, err := c.resourceReplicas(context.Background(), 1, 50, corev1.ResourceCPU, tol, "default", labels.Everything(), ""); err == nil {
		t.Fatal("a metrics error must fail")
	}
	c, _ = setup()
	if _, _, _, _, err := c.resourceReplicas(context.Background(), 1, 50, corev1.ResourceCPU, tol, "default", labels.Everything(), ""); err == nil ||
		!strings.Contains(err.Error(), "no pods returned by selector") {
		t.Fatalf("no pods: %v", err)
	}
}

func TestPlainAndCustomReplicas(t *testing.T) {
	ctx := context.Background()
	// Pods metric: average 20 against 15 per pod.
	c, _ := setup(ready(1000, 20000), ready(1000, 10000), ready(1000, 30000))
	if n, avg, _, err := c.podsReplicas(ctx, 3, 15000, "rps", tol, "default", labels.Everything(), labels.Everything()); err != nil || n != 4 || avg != 20000 {
		t.Fatalf("pods metric: %d %d %v", n, avg, err)
	}
	// Raw resource value: average 600m against 500m: within tolerance? 1.2: no.
	c, _ = setup(ready(1000, 600), ready(1000, 600))
	if n, _, _, err := c.rawResourceReplicas(ctx, 2, 500, corev1.ResourceCPU, tol, "default", labels.Everything(), ""); err != nil || n != 3 {
		t.Fatalf("raw resource: %d %v", n, err)
	}
	// Object metric against a value: twice the target doubles the ready pods.
	c, m := setup(ready(1000, 0), ready(1000, 0), unready(1000, 0))
	m.object = 20000
	ref := autoscalingv2.CrossVersionObjectReference{Kind: "Service", Name: "web", APIVersion: "v1"}
	if n, _, _, err := c.objectReplicas(ctx, 3, 10000, "rps", tol, "default", ref, labels.Everything(), labels.Everything()); err != nil || n != 4 {
		t.Fatalf("object value: %d %v", n, err)
	}
	// Object metric per pod: 20 over a target of 4 per pod.
	if n, avg, _, err := c.objectPerPodReplicas(ctx, 3, 4000, "rps", tol, "default", ref, labels.Everything()); err != nil || n != 5 || avg != 6667 {
		t.Fatalf("object per pod: %d %d %v", n, avg, err)
	}
	// External value: 8.6 against 4.4 with one ready pod.
	c, m = setup(ready(1000, 0))
	m.external = []int64{8600}
	if n, usage, _, err := c.externalReplicas(ctx, 1, 4400, "queue", tol, "default", labels.Everything(), labels.Everything()); err != nil || n != 2 || usage != 8600 {
		t.Fatalf("external value: %d %d %v", n, usage, err)
	}
	// External summed and per pod: (5+3.6)/2.15 = 4.
	m.external = []int64{5000, 3600}
	if n, _, _, err := c.externalPerPodReplicas(ctx, 3, 2150, "queue", tol, "default", labels.Everything()); err != nil || n != 4 {
		t.Fatalf("external per pod: %d %v", n, err)
	}
	// Within tolerance per pod: 8.6/(3*2.9) = 0.99.
	if n, _, _, err := c.externalPerPodReplicas(ctx, 3, 2900, "queue", tol, "default", labels.Everything()); err != nil || n != 3 {
		t.Fatalf("external per pod within tolerance: %d %v", n, err)
	}
	// From zero replicas: the ratio itself.
	if n, _, _, err := c.externalReplicas(ctx, 0, 2000, "queue", tol, "default", labels.Everything(), labels.Everything()); err != nil || n != 5 {
		t.Fatalf("external from zero: %d %v", n, err)
	}
}

func TestContainerResourceRequests(t *testing.T) {
	c, _ := setup(ready(1000, 800))
	p := c.pods.(fakePods)[0]
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}})
	// Against the app container's 1 CPU: 80% of a 40% target.
	if n, util, _, _, err := c.resourceReplicas(context.Background(), 1, 40, corev1.ResourceCPU, tol, "default", labels.Everything(), "app"); err != nil || n != 2 || util != 80 {
		t.Fatalf("container app: %d %d %v", n, util, err)
	}
	// Against the pod's 4 CPUs: 20%.
	if n, util, _, _, err := c.resourceReplicas(context.Background(), 1, 40, corev1.ResourceCPU, tol, "default", labels.Everything(), ""); err != nil || n != 1 || util != 20 {
		t.Fatalf("pod: %d %d %v", n, util, err)
	}
	if _, _, _, _, err := c.resourceReplicas(context.Background(), 1, 40, corev1.ResourceCPU, tol, "default", labels.Everything(), "nope"); err == nil {
		t.Fatal("a missing container must fail")
	}
}
