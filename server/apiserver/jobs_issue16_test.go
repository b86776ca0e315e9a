package apiserver_test

import (
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestJobStatusPatchKeepsMetadata: a /status PATCH of a Job or CronJob
// keeps its metadata changes and drops spec changes, as kube-apiserver's
// status strategies for them (the conformance tests "should apply changes
// to a job status" and "should support CronJob API operations").
func TestJobStatusPatchKeepsMetadata(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	j, err := e.cs.BatchV1().Jobs("default").Create(e.ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "j"}, Spec: batchv1.JobSpec{Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	patch := []byte(`{"metadata":{"annotations":{"patchedstatus":"true"}},"spec":{"parallelism":5},"status":{"ready":3}}`)
	got, err := e.cs.BatchV1().Jobs("default").Patch(e.ctx, "j", types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatal(err)
	}
	if got.Annotations["patchedstatus"] != "true" || got.Status.Ready == nil || *got.Status.Ready != 3 ||
		*got.Spec.Parallelism != *j.Spec.Parallelism || got.Generation != j.Generation {
		t.Fatalf("job after status patch: annotations %v ready %v parallelism %d generation %d",
			got.Annotations, got.Status.Ready, *got.Spec.Parallelism, got.Generation)
	}
	// An update of /status keeps labels too.
	got.Labels = map[string]string{"updated": "status"}
	got, err = e.cs.BatchV1().Jobs("default").UpdateStatus(e.ctx, got, metav1.UpdateOptions{})
	if err != nil || got.Labels["updated"] != "status" {
		t.Fatalf("job status update: %v, labels %v", err, got)
	}

	_, err = e.cs.BatchV1().CronJobs("default").Create(e.ctx, &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "cj"},
		Spec: batchv1.CronJobSpec{Schedule: "* * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	patch = []byte(`{"metadata":{"annotations":{"patchedstatus":"true"}},"spec":{"schedule":"1 * * * *"},"status":{"lastScheduleTime":"2026-01-01T00:00:00Z"}}`)
	cj, err := e.cs.BatchV1().CronJobs("default").Patch(e.ctx, "cj", types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatal(err)
	}
	if cj.Annotations["patchedstatus"] != "true" || cj.Status.LastScheduleTime == nil || cj.Spec.Schedule != "* * * * *" {
		t.Fatalf("cronjob after status patch: annotations %v status %+v schedule %q", cj.Annotations, cj.Status, cj.Spec.Schedule)
	}
}

// TestEvictionMarksDisruptionTarget: an evicted pod gets the
// DisruptionTarget condition (reason EvictionByEvictionAPI) before it is
// deleted, as kube-apiserver's eviction, so that a Job's pod failure
// policy can match it; a dry run changes nothing.
func TestEvictionMarksDisruptionTarget(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	pods := e.cs.CoreV1().Pods("default")
	// A finalizer keeps the pod after the eviction's delete.
	_, err := pods.Create(e.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Finalizers: []string{"example.com/hold"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dry := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "p"}, DeleteOptions: &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}}
	if err := pods.EvictV1(e.ctx, dry); err != nil {
		t.Fatal(err)
	}
	if p, err := pods.Get(e.ctx, "p", metav1.GetOptions{}); err != nil || len(p.Status.Conditions) != 0 || p.DeletionTimestamp != nil {
		t.Fatalf("dry-run eviction changed the pod: %v %+v", err, p)
	}
	if err := pods.EvictV1(e.ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "p"}}); err != nil {
		t.Fatal(err)
	}
	p, err := pods.Get(e.ctx, "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cond *corev1.PodCondition
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.DisruptionTarget {
			cond = &p.Status.Conditions[i]
		}
	}
	if p.DeletionTimestamp == nil || cond == nil || cond.Status != corev1.ConditionTrue || cond.Reason != "EvictionByEvictionAPI" {
		t.Fatalf("evicted pod: deletionTimestamp %v conditions %+v", p.DeletionTimestamp, p.Status.Conditions)
	}
}
