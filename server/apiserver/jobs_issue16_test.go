package apiserver_test

import (
	"errors"
	"math"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// TestJobPolicyValidationAndDefaults: kube-apiserver's defaults and rules
// for podFailurePolicy, successPolicy, backoffLimitPerIndex and
// maxFailedIndexes (422 naming the field).
func TestJobPolicyValidationAndDefaults(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	jobs := e.cs.BatchV1().Jobs("default")
	indexed := batchv1.IndexedCompletion
	newJob := func(name string) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: batchv1.JobSpec{
			CompletionMode: &indexed, Completions: ptrTo(int32(4)),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}
	}
	ok := newJob("ok")
	ok.Spec.BackoffLimitPerIndex, ok.Spec.MaxFailedIndexes = ptrTo(int32(1)), ptrTo(int32(2))
	ok.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{Action: batchv1.PodFailurePolicyActionFailIndex, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
			ContainerName: ptrTo("c"), Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{1, 42}}},
		{Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget}}},
	}}
	ok.Spec.SuccessPolicy = &batchv1.SuccessPolicy{Rules: []batchv1.SuccessPolicyRule{{SucceededIndexes: ptrTo("0,2-3"), SucceededCount: ptrTo(int32(2))}}}
	got, err := jobs.Create(e.ctx, ok, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *got.Spec.BackoffLimit != math.MaxInt32 || got.Spec.PodReplacementPolicy == nil || *got.Spec.PodReplacementPolicy != batchv1.Failed ||
		got.Spec.PodFailurePolicy.Rules[1].OnPodConditions[0].Status != corev1.ConditionTrue {
		t.Fatalf("defaults: backoffLimit %d podReplacementPolicy %v pattern %+v", *got.Spec.BackoffLimit,
			got.Spec.PodReplacementPolicy, got.Spec.PodFailurePolicy.Rules[1].OnPodConditions[0])
	}
	got.Spec.PodFailurePolicy.Rules = got.Spec.PodFailurePolicy.Rules[:1]
	if _, err := jobs.Update(e.ctx, got, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) || !hasCause(err, "spec.podFailurePolicy") {
		t.Fatalf("podFailurePolicy changed: %v", err)
	}

	for field, mutate := range map[string]func(j *batchv1.Job){
		"spec.podFailurePolicy.rules[0].action": func(j *batchv1.Job) {
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{Action: batchv1.PodFailurePolicyActionFailIndex,
				OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{1}}}}}
		},
		"spec.template.spec.restartPolicy": func(j *batchv1.Job) {
			j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{Action: batchv1.PodFailurePolicyActionFailJob,
				OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{1}}}}}
		},
		"spec.podFailurePolicy.rules[0].onExitCodes.values[0]": func(j *batchv1.Job) {
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{Action: batchv1.PodFailurePolicyActionFailJob,
				OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{0}}}}}
		},
		"spec.completionMode": func(j *batchv1.Job) {
			nonIndexed := batchv1.NonIndexedCompletion
			j.Spec.CompletionMode = &nonIndexed
			j.Spec.SuccessPolicy = &batchv1.SuccessPolicy{Rules: []batchv1.SuccessPolicyRule{{SucceededCount: ptrTo(int32(1))}}}
		},
		"spec.successPolicy.rules[0].succeededIndexes": func(j *batchv1.Job) {
			j.Spec.SuccessPolicy = &batchv1.SuccessPolicy{Rules: []batchv1.SuccessPolicyRule{{SucceededIndexes: ptrTo("2-9")}}}
		},
		"spec.backoffLimitPerIndex": func(j *batchv1.Job) { j.Spec.MaxFailedIndexes = ptrTo(int32(1)) },
	} {
		j := newJob("bad")
		mutate(j)
		_, err := jobs.Create(e.ctx, j, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) || !hasCause(err, field) {
			t.Errorf("%s: want 422 naming it, got %v", field, err)
		}
	}
}

func hasCause(err error, field string) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) || st.Status().Details == nil {
		return false
	}
	for _, c := range st.Status().Details.Causes {
		if c.Field == field {
			return true
		}
	}
	return false
}
