package statefulset_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/statefulset"
)

func ptr[T any](v T) *T { return &v }

func TestOrderedStatefulSet(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1")
	c := statefulset.New(e.CC)
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr(int32(3)), ServiceName: "db",
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"},
				Annotations: map[string]string{controllertest.AnnotationNotReady: "1"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "v1"}}}},
		},
	}
	if _, err := e.Client.AppsV1().StatefulSets("default").Create(e.Ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := func() map[string]corev1.Pod {
		l, _ := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{})
		out := map[string]corev1.Pod{}
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil {
				out[p.Name] = p
			}
		}
		return out
	}
	// OrderedReady: db-0 never gets ready, so db-1 is never created.
	e.WaitFor(10*time.Second, "db-0", func() error {
		if _, ok := pods()["db-0"]; !ok {
			return controllertest.Errorf("no db-0")
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	if ps := pods(); len(ps) != 1 || ps["db-0"].Spec.Hostname != "db-0" || ps["db-0"].Spec.Subdomain != "db" {
		t.Fatalf("pods %v", ps)
	}
	// Ready pods: the rest come, in order.
	p := []byte(`{"spec":{"template":{"metadata":{"annotations":{"controllertest.skiff.io/not-ready":null}}}}}`)
	if _, err := e.Client.AppsV1().StatefulSets("default").Patch(e.Ctx, "db", types.StrategicMergePatchType, p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// As in Kubernetes, a pod stuck on a bad revision under OrderedReady
	// must be deleted by hand to be replaced.
	e.WaitFor(10*time.Second, "new revision", func() error {
		s, _ := e.Client.AppsV1().StatefulSets("default").Get(e.Ctx, "db", metav1.GetOptions{})
		if s.Status.UpdateRevision == s.Status.CurrentRevision {
			return controllertest.Errorf("status %+v", s.Status)
		}
		return nil
	})
	if err := e.Client.CoreV1().Pods("default").Delete(e.Ctx, "db-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatus := func(what string, ok func(*appsv1.StatefulSet) bool) *appsv1.StatefulSet {
		var s *appsv1.StatefulSet
		e.WaitFor(20*time.Second, what, func() error {
			var err error
			if s, err = e.Client.AppsV1().StatefulSets("default").Get(e.Ctx, "db", metav1.GetOptions{}); err != nil {
				return err
			}
			if !ok(s) {
				return controllertest.Errorf("status %+v", s.Status)
			}
			return nil
		})
		return s
	}
	s := waitStatus("3 ready on one revision", func(s *appsv1.StatefulSet) bool {
		st := s.Status
		return st.ReadyReplicas == 3 && st.UpdatedReplicas == 3 && st.CurrentRevision == st.UpdateRevision && st.ObservedGeneration == s.Generation
	})
	ps := pods()
	if ps["db-0"].CreationTimestamp.After(ps["db-2"].CreationTimestamp.Time) {
		t.Fatal("db-2 created before db-0")
	}
	// Rolling update: every pod replaced, highest ordinal first.
	first := s.Status.CurrentRevision
	s.Spec.Template.Spec.Containers[0].Image = "v2"
	if _, err := e.Client.AppsV1().StatefulSets("default").Update(e.Ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s = waitStatus("rolled to v2", func(s *appsv1.StatefulSet) bool {
		st := s.Status
		return st.UpdateRevision != first && st.CurrentRevision == st.UpdateRevision && st.UpdatedReplicas == 3 && st.ReadyReplicas == 3
	})
	for name, p := range pods() {
		if p.Spec.Containers[0].Image != "v2" || p.Labels[appsv1.ControllerRevisionHashLabelKey] != s.Status.UpdateRevision {
			t.Fatalf("pod %s: %s %v", name, p.Spec.Containers[0].Image, p.Labels)
		}
	}
	// Scale down removes the highest ordinals.
	s.Spec.Replicas = ptr(int32(1))
	if _, err := e.Client.AppsV1().StatefulSets("default").Update(e.Ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "scaled to 1", func() error {
		ps := pods()
		if _, ok := ps["db-0"]; len(ps) != 1 || !ok {
			return controllertest.Errorf("pods %d", len(ps))
		}
		return nil
	})
}

// TestVolumeClaimTemplates: each pod gets its claims
// <template>-<set>-<ordinal> before it is created; they outlive the pods,
// and whenScaled: Delete removes the claims of the ordinals scaled away.
func TestVolumeClaimTemplates(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1")
	c := statefulset.New(e.CC)
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr(int32(2)), ServiceName: "db", PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "v1",
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}}}},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}},
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType, WhenScaled: appsv1.DeletePersistentVolumeClaimRetentionPolicyType},
		},
	}
	if _, err := e.Client.AppsV1().StatefulSets("default").Create(e.Ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ord := range []string{"0", "1"} {
		e.WaitFor(10*time.Second, "db-"+ord+" with its claim", func() error {
			p, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, "db-"+ord, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(p.Spec.Volumes) == 0 || p.Spec.Volumes[0].PersistentVolumeClaim == nil || p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "data-db-"+ord {
				return controllertest.Errorf("volumes %+v", p.Spec.Volumes)
			}
			c, err := e.Client.CoreV1().PersistentVolumeClaims("default").Get(e.Ctx, "data-db-"+ord, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if c.Labels["app"] != "db" || len(c.OwnerReferences) != 0 {
				return controllertest.Errorf("claim labels %v owners %v", c.Labels, c.OwnerReferences)
			}
			return nil
		})
	}
	p := []byte(`{"spec":{"replicas":1}}`)
	if _, err := e.Client.AppsV1().StatefulSets("default").Patch(e.Ctx, "db", types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "data-db-1 deleted", func() error {
		_, err := e.Client.CoreV1().PersistentVolumeClaims("default").Get(e.Ctx, "data-db-1", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return controllertest.Errorf("data-db-1: %v", err)
	})
	if _, err := e.Client.CoreV1().PersistentVolumeClaims("default").Get(e.Ctx, "data-db-0", metav1.GetOptions{}); err != nil {
		t.Fatalf("data-db-0: %v", err)
	}
}
