package replicaset_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/replicaset"
)

func template(app string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}},
	}
}

func ptr[T any](v T) *T { return &v }

func TestReplicaSetScalesAndReportsStatus(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1", "n2")
	c := replicaset.NewReplicaSet(e.CC)
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })

	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr(int32(3)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: template("web")},
	}
	// An orphan matching the selector is adopted, not duplicated.
	orphan := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "orphan", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: template("web").Spec}
	if _, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, orphan, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Client.AppsV1().ReplicaSets("default").Create(e.Ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, e, "web", 3)
	p, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, "orphan", metav1.GetOptions{})
	if err != nil || metav1.GetControllerOf(p) == nil || metav1.GetControllerOf(p).Name != "web" {
		t.Fatalf("orphan not adopted: %v %+v", err, p.OwnerReferences)
	}

	// Scale down: two pods go, status follows.
	cur, _ := e.Client.AppsV1().ReplicaSets("default").Get(e.Ctx, "web", metav1.GetOptions{})
	cur.Spec.Replicas = ptr(int32(1))
	if _, err := e.Client.AppsV1().ReplicaSets("default").Update(e.Ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, e, "web", 1)
	// A deleted pod is replaced.
	pods := activePods(t, e)
	if err := e.Client.CoreV1().Pods("default").Delete(e.Ctx, pods[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "replacement pod", func() error {
		ps := activePods(t, e)
		if len(ps) != 1 || ps[0].Name == pods[0].Name {
			return controllertest.Errorf("pods %d", len(ps))
		}
		return nil
	})
}

func TestReplicationController(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1")
	c := replicaset.NewReplicationController(e.CC)
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })
	tmpl := template("rc")
	rc := &corev1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Name: "rc", Namespace: "default"},
		Spec:       corev1.ReplicationControllerSpec{Replicas: ptr(int32(2)), Template: &tmpl},
	}
	if _, err := e.Client.CoreV1().ReplicationControllers("default").Create(e.Ctx, rc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "rc status", func() error {
		rc, err := e.Client.CoreV1().ReplicationControllers("default").Get(e.Ctx, "rc", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if rc.Status.ReadyReplicas != 2 || rc.Status.ObservedGeneration != rc.Generation {
			return controllertest.Errorf("status %+v", rc.Status)
		}
		return nil
	})
	pods := activePods(t, e)
	if len(pods) != 2 || metav1.GetControllerOf(pods[0]).Kind != "ReplicationController" {
		t.Fatalf("pods: %d %+v", len(pods), pods[0].OwnerReferences)
	}
}

func waitReplicas(t *testing.T, e *controllertest.Env, name string, n int32) {
	t.Helper()
	e.WaitFor(15*time.Second, "replica set status", func() error {
		rs, err := e.Client.AppsV1().ReplicaSets("default").Get(e.Ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := rs.Status
		if st.Replicas != n || st.ReadyReplicas != n || st.AvailableReplicas != n || st.ObservedGeneration != rs.Generation {
			return controllertest.Errorf("status %+v", st)
		}
		if got := len(activePods(t, e)); got != int(n) {
			return controllertest.Errorf("%d active pods", got)
		}
		return nil
	})
}

func activePods(t *testing.T, e *controllertest.Env) []*corev1.Pod {
	t.Helper()
	list, err := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*corev1.Pod
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp == nil {
			out = append(out, &list.Items[i])
		}
	}
	return out
}
