package podautoscaler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	scalefake "k8s.io/client-go/scale/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/server/controller"
)

// resettable is a fixed RESTMapper.
type resettable struct{ meta.RESTMapper }

func (resettable) Reset() {}

// testController is the controller over fake clients: a Deployment web
// whose /scale reports spec replicas, one pod web-0 requesting 100m CPU,
// and the fake metrics source m.
type testController struct {
	c       *Controller
	client  *fake.Clientset
	scales  *scalefake.FakeScaleClient
	events  *record.FakeRecorder
	updated []int32
	scaleOK bool
}

func newTestController(t *testing.T, m *fakeMetrics, replicas int32) *testController {
	t.Helper()
	client := fake.NewClientset()
	cc, err := controller.NewContext(client, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cc.Now = func() time.Time { return t0 }
	mapper := meta.NewDefaultRESTMapper([]schema.GroupVersion{{Group: "apps", Version: "v1"}})
	mapper.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	tc := &testController{client: client, scales: &scalefake.FakeScaleClient{}, events: record.NewFakeRecorder(20), scaleOK: true}
	tc.scales.AddReactor("get", "deployments", func(core.Action) (bool, runtime.Object, error) {
		if !tc.scaleOK {
			return true, nil, errors.New("scale unavailable")
		}
		return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: autoscalingv1.ScaleSpec{Replicas: replicas}, Status: autoscalingv1.ScaleStatus{Replicas: replicas, Selector: "app=web"}}, nil
	})
	tc.scales.AddReactor("update", "deployments", func(a core.Action) (bool, runtime.Object, error) {
		s := a.(core.UpdateAction).GetObject().(*autoscalingv1.Scale)
		tc.updated = append(tc.updated, s.Spec.Replicas)
		return true, s, nil
	})
	tc.c = New(cc, Options{Scales: tc.scales, Mapper: resettable{mapper}, Metrics: m})
	tc.c.recorder = tc.events
	c, _ := setup(ready(100, 0))
	for _, p := range c.pods.(fakePods) {
		p.Name, p.Labels = "web-0", map[string]string{"app": "web"}
		if err := cc.Informers.Core().V1().Pods().Informer().GetIndexer().Add(p); err != nil {
			t.Fatal(err)
		}
	}
	return tc
}

func cpuHPA(target int32) *autoscalingv2.HorizontalPodAutoscaler {
	one := int32(1)
	return &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    &one, MaxReplicas: 10,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &target}}}},
		}}
}

func (tc *testController) run(t *testing.T, hpa *autoscalingv2.HorizontalPodAutoscaler) (*autoscalingv2.HorizontalPodAutoscaler, []string, error) {
	t.Helper()
	ctx := context.Background()
	if _, err := tc.client.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := tc.c.reconcile(ctx, "default/web", hpa.DeepCopy())
	got, gerr := tc.client.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "web", metav1.GetOptions{})
	if gerr != nil {
		t.Fatal(gerr)
	}
	var events []string
	for len(tc.events.Events) > 0 {
		events = append(events, <-tc.events.Events)
	}
	return got, events, err
}

func conditions(h *autoscalingv2.HorizontalPodAutoscaler) map[autoscalingv2.HorizontalPodAutoscalerConditionType]string {
	out := map[autoscalingv2.HorizontalPodAutoscalerConditionType]string{}
	for _, c := range h.Status.Conditions {
		out[c.Type] = string(c.Status) + " " + c.Reason
	}
	return out
}

// One pod at 300% of its request against 50%: the target is scaled to
// 4 (the default rate: double, at least 4), with kube-controller-manager's
// event, status and conditions.
func TestReconcileScalesUp(t *testing.T) {
	m := &fakeMetrics{pods: PodMetrics{"web-0": {Timestamp: t0, Window: 30 * time.Second, Value: 300}}}
	tc := newTestController(t, m, 1)
	h, events, err := tc.run(t, cpuHPA(50))
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.updated) != 1 || tc.updated[0] != 4 {
		t.Fatalf("scale updates: %v", tc.updated)
	}
	if len(events) != 1 || events[0] != "Normal SuccessfulRescale New size: 4; reason: cpu resource utilization (percentage of request) above target" {
		t.Fatalf("events: %q", events)
	}
	st := h.Status
	if st.DesiredReplicas != 4 || st.CurrentReplicas != 1 || st.LastScaleTime == nil || len(st.CurrentMetrics) != 1 ||
		*st.CurrentMetrics[0].Resource.Current.AverageUtilization != 300 || st.CurrentMetrics[0].Resource.Current.AverageValue.MilliValue() != 300 {
		t.Fatalf("status: %+v", st)
	}
	c := conditions(h)
	if c[autoscalingv2.AbleToScale] != "True SucceededRescale" || c[autoscalingv2.ScalingActive] != "True ValidMetricFound" ||
		c[autoscalingv2.ScalingLimited] != "True ScaleUpLimit" {
		t.Fatalf("conditions: %v", c)
	}
}

// Metrics that cannot be read: no rescale, ScalingActive False with the
// reason, and warning events.
func TestReconcileMetricsUnavailable(t *testing.T) {
	m := &fakeMetrics{err: errors.New("no metrics store")}
	tc := newTestController(t, m, 2)
	h, events, err := tc.run(t, cpuHPA(50))
	if err == nil || len(tc.updated) != 0 {
		t.Fatalf("err %v, updates %v", err, tc.updated)
	}
	if c := conditions(h); c[autoscalingv2.ScalingActive] != "False FailedGetResourceMetric" || c[autoscalingv2.AbleToScale] != "True SucceededGetScale" {
		t.Fatalf("conditions: %v", c)
	}
	if len(events) != 2 || !strings.HasPrefix(events[0], "Warning FailedGetResourceMetric failed to get cpu utilization") ||
		!strings.HasPrefix(events[1], "Warning FailedComputeMetricsReplicas invalid metrics (1 invalid out of 1)") {
		t.Fatalf("events: %q", events)
	}
	if h.Status.DesiredReplicas != 2 || h.Status.CurrentReplicas != 2 {
		t.Fatalf("status: %+v", h.Status)
	}
}

// A target whose scale cannot be read: AbleToScale False FailedGetScale.
func TestReconcileNoScale(t *testing.T) {
	tc := newTestController(t, &fakeMetrics{}, 1)
	tc.scaleOK = false
	h, events, err := tc.run(t, cpuHPA(50))
	if err == nil || conditions(h)[autoscalingv2.AbleToScale] != "False FailedGetScale" || len(events) != 1 || !strings.HasPrefix(events[0], "Warning FailedGetScale") {
		t.Fatalf("err %v, conditions %v, events %q", err, conditions(h), events)
	}
}

// Replicas above max are brought down without reading metrics; a target
// at zero replicas disables scaling.
func TestReconcileLimitsAndDisabled(t *testing.T) {
	tc := newTestController(t, &fakeMetrics{err: errors.New("unused")}, 12)
	h, events, err := tc.run(t, cpuHPA(50))
	if err != nil || len(tc.updated) != 1 || tc.updated[0] != 10 || h.Status.DesiredReplicas != 10 {
		t.Fatalf("err %v, updates %v, status %+v", err, tc.updated, h.Status)
	}
	if len(events) != 1 || events[0] != "Normal SuccessfulRescale New size: 10; reason: Current number of replicas above Spec.MaxReplicas" {
		t.Fatalf("events: %q", events)
	}
	tc = newTestController(t, &fakeMetrics{}, 0)
	h, _, err = tc.run(t, cpuHPA(50))
	if err != nil || len(tc.updated) != 0 || conditions(h)[autoscalingv2.ScalingActive] != "False ScalingDisabled" {
		t.Fatalf("err %v, updates %v, conditions %v", err, tc.updated, conditions(h))
	}
}

// minReplicas 0 with an External metric (HPAScaleToZero): an idle queue
// scales the target to zero, and from zero the metric alone brings it
// back (ceil(value/target) replicas), as kube-controller-manager does.
func TestReconcileScaleToZero(t *testing.T) {
	zero, target := int32(0), resource.MustParse("30")
	queueHPA := func() *autoscalingv2.HorizontalPodAutoscaler {
		h := cpuHPA(50)
		h.Spec.MinReplicas = &zero
		h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: &target}}}}
		return h
	}
	tc := newTestController(t, &fakeMetrics{external: []int64{0}}, 1)
	h, events, err := tc.run(t, queueHPA())
	if err != nil || len(tc.updated) != 1 || tc.updated[0] != 0 || h.Status.DesiredReplicas != 0 {
		t.Fatalf("err %v, updates %v, status %+v", err, tc.updated, h.Status)
	}
	if len(events) != 1 || events[0] != "Normal SuccessfulRescale New size: 0; reason: All metrics below target" {
		t.Fatalf("events: %q", events)
	}
	tc = newTestController(t, &fakeMetrics{external: []int64{50000}}, 0)
	h, _, err = tc.run(t, queueHPA())
	if err != nil || len(tc.updated) != 1 || tc.updated[0] != 2 {
		t.Fatalf("err %v, updates %v, conditions %v", err, tc.updated, conditions(h))
	}
	if c := conditions(h); c[autoscalingv2.ScalingActive] != "True ValidMetricFound" {
		t.Fatalf("conditions: %v", c)
	}
}
