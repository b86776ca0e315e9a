package deployment_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/deployment"
	"github.com/skiff-io/skiff/server/controller/replicaset"
)

func ptr[T any](v T) *T { return &v }

func newDeployment(name string, replicas int32, surge, unavail intstr.IntOrString) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "v1"}}},
			},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavail}},
		},
	}
}

func start(t *testing.T) *controllertest.Env {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1", "n2", "n3")
	rs := replicaset.NewReplicaSet(e.CC)
	d := deployment.New(e.CC)
	e.Start(func(ctx context.Context) { rs.Run(ctx, 3) }, func(ctx context.Context) { d.Run(ctx, 3) })
	return e
}

// watchBounds watches the deployment's pods and records the largest
// number of live pods and the smallest number of available ones (after
// the first complete rollout).
type bounds struct {
	mu       sync.Mutex
	pods     map[types.UID]*corev1.Pod
	maxLive  int
	minReady int
	armed    bool
}

func watchBounds(t *testing.T, e *controllertest.Env, app string) *bounds {
	b := &bounds{pods: map[types.UID]*corev1.Pod{}, minReady: 1 << 30}
	w, err := e.Client.CoreV1().Pods("default").Watch(e.Ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			b.mu.Lock()
			if ev.Type == watch.Deleted {
				delete(b.pods, p.UID)
			} else {
				b.pods[p.UID] = p
			}
			live, ready := 0, 0
			for _, p := range b.pods {
				if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
					continue
				}
				live++
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
			b.maxLive = max(b.maxLive, live)
			if b.armed {
				b.minReady = min(b.minReady, ready)
			}
			b.mu.Unlock()
		}
	}()
	t.Cleanup(w.Stop)
	return b
}

func (b *bounds) arm() {
	b.mu.Lock()
	b.armed, b.maxLive = true, 0
	b.mu.Unlock()
}

func (b *bounds) get() (int, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.maxLive, b.minReady
}

func waitComplete(t *testing.T, e *controllertest.Env, name string) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	e.WaitFor(30*time.Second, "rollout of "+name, func() error {
		var err error
		d, err = e.Client.AppsV1().Deployments("default").Get(e.Ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := d.Status
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != *d.Spec.Replicas || st.Replicas != *d.Spec.Replicas ||
			st.AvailableReplicas != *d.Spec.Replicas {
			return controllertest.Errorf("status %+v", st)
		}
		for _, c := range st.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Reason == "NewReplicaSetAvailable" {
				return nil
			}
		}
		return controllertest.Errorf("conditions %+v", st.Conditions)
	})
	return d
}

func setImage(t *testing.T, e *controllertest.Env, name, image string) {
	t.Helper()
	p, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
		"containers": []map[string]any{{"name": "c", "image": image}}}}}})
	if _, err := e.Client.AppsV1().Deployments("default").Patch(e.Ctx, name, types.StrategicMergePatchType, p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestRollingUpdateWithinBoundsAndRollback(t *testing.T) {
	e := start(t)
	b := watchBounds(t, e, "web")
	if _, err := e.Client.AppsV1().Deployments("default").Create(e.Ctx, newDeployment("web", 6, intstr.FromInt32(2), intstr.FromInt32(1)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := waitComplete(t, e, "web")
	if d.Annotations[deployment.RevisionAnnotation] != "1" {
		t.Fatalf("revision annotation %v", d.Annotations)
	}
	b.arm()
	setImage(t, e, "web", "v2")
	d = waitComplete(t, e, "web")
	if d.Annotations[deployment.RevisionAnnotation] != "2" {
		t.Fatalf("revision after update: %v", d.Annotations)
	}
	// Roll back as kubectl rollout undo does: the template of revision 1.
	setImage(t, e, "web", "v1")
	d = waitComplete(t, e, "web")
	if d.Annotations[deployment.RevisionAnnotation] != "3" {
		t.Fatalf("revision after rollback: %v", d.Annotations)
	}
	maxLive, minReady := b.get()
	if maxLive > 6+2 || minReady < 6-1 {
		t.Fatalf("bounds exceeded: max live pods %d (limit 8), min ready %d (limit 5)", maxLive, minReady)
	}
	rss, _ := e.Client.AppsV1().ReplicaSets("default").List(e.Ctx, metav1.ListOptions{})
	if len(rss.Items) != 2 {
		t.Fatalf("replica sets: %d, want 2 (the rollback reuses revision 1's)", len(rss.Items))
	}
	for _, rs := range rss.Items {
		want := int32(0)
		if rs.Spec.Template.Spec.Containers[0].Image == "v1" {
			want = 6
			if rs.Annotations[deployment.RevisionAnnotation] != "3" || rs.Annotations[deployment.RevisionHistoryAnnotation] != "1" {
				t.Fatalf("rolled-back set annotations %v", rs.Annotations)
			}
		}
		if *rs.Spec.Replicas != want {
			t.Fatalf("set %s replicas %d, want %d", rs.Name, *rs.Spec.Replicas, want)
		}
	}
}

func TestRecreateAndScale(t *testing.T) {
	e := start(t)
	d := newDeployment("rec", 3, intstr.FromInt32(0), intstr.FromInt32(0))
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	if _, err := e.Client.AppsV1().Deployments("default").Create(e.Ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, e, "rec")
	b := watchBounds(t, e, "rec")
	setImage(t, e, "rec", "v2")
	waitComplete(t, e, "rec")
	if maxLive, _ := b.get(); maxLive > 3 {
		t.Fatalf("Recreate ran %d pods at once", maxLive)
	}
	p := []byte(`{"spec":{"replicas":5}}`)
	if _, err := e.Client.AppsV1().Deployments("default").Patch(e.Ctx, "rec", types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, e, "rec")
}

func TestPausedAndProgressDeadline(t *testing.T) {
	e := start(t)
	d := newDeployment("slow", 2, intstr.FromInt32(1), intstr.FromInt32(0))
	d.Spec.ProgressDeadlineSeconds = ptr(int32(2))
	if _, err := e.Client.AppsV1().Deployments("default").Create(e.Ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, e, "slow")
	// Pause: a template change rolls nothing out.
	patch := func(p string) {
		if _, err := e.Client.AppsV1().Deployments("default").Patch(e.Ctx, "slow", types.StrategicMergePatchType, []byte(p), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	patch(`{"spec":{"paused":true}}`)
	patch(`{"spec":{"template":{"metadata":{"annotations":{"controllertest.skiff.io/not-ready":"1"}}}}}`)
	e.WaitFor(10*time.Second, "paused condition", func() error {
		d, _ := e.Client.AppsV1().Deployments("default").Get(e.Ctx, "slow", metav1.GetOptions{})
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Reason == "DeploymentPaused" && d.Status.ObservedGeneration == d.Generation {
				return nil
			}
		}
		return controllertest.Errorf("conditions %+v", d.Status.Conditions)
	})
	if rss, _ := e.Client.AppsV1().ReplicaSets("default").List(e.Ctx, metav1.ListOptions{}); len(rss.Items) != 1 {
		t.Fatalf("paused deployment rolled out: %d replica sets", len(rss.Items))
	}
	// Resume: the new pods never become ready, so the rollout times out.
	patch(`{"spec":{"paused":false}}`)
	e.WaitFor(20*time.Second, "ProgressDeadlineExceeded", func() error {
		d, _ := e.Client.AppsV1().Deployments("default").Get(e.Ctx, "slow", metav1.GetOptions{})
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" && c.Status == corev1.ConditionFalse {
				return nil
			}
		}
		return controllertest.Errorf("conditions %+v", d.Status.Conditions)
	})
	// maxUnavailable 0: both old pods still serve.
	d, _ = e.Client.AppsV1().Deployments("default").Get(e.Ctx, "slow", metav1.GetOptions{})
	if d.Status.AvailableReplicas != 2 {
		t.Fatalf("available %d during a stuck rollout with maxUnavailable 0", d.Status.AvailableReplicas)
	}
}
