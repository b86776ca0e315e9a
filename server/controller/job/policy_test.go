package job_test

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/job"
)

// jobCondition returns the job's condition of type t, or nil.
func jobCondition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		if j.Status.Conditions[i].Type == t {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// wantFinished checks the terminal condition and the interim one before
// it (FailureTarget before Failed, SuccessCriteriaMet before Complete),
// both with reason.
func wantFinished(t *testing.T, j *batchv1.Job, final, interim batchv1.JobConditionType, reason string) {
	t.Helper()
	f, i := jobCondition(j, final), jobCondition(j, interim)
	if f == nil || i == nil || f.Status != corev1.ConditionTrue || i.Status != corev1.ConditionTrue {
		t.Fatalf("conditions %+v: want %s and %s", j.Status.Conditions, interim, final)
	}
	if f.Reason != reason || i.Reason != reason || f.Message != i.Message {
		t.Fatalf("conditions %+v: want reason %s on both", j.Status.Conditions, reason)
	}
	if f.LastTransitionTime.Before(&i.LastTransitionTime) {
		t.Fatalf("%s at %v before %s at %v", final, f.LastTransitionTime, interim, i.LastTransitionTime)
	}
}

func createJob(t *testing.T, e *controllertest.Env, j *batchv1.Job) {
	t.Helper()
	if _, err := e.Client.BatchV1().Jobs("default").Create(e.Ctx, j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func indexed(j *batchv1.Job, completions int32) {
	mode := batchv1.IndexedCompletion
	j.Spec.CompletionMode, j.Spec.Completions, j.Spec.Parallelism = &mode, ptr(completions), ptr(completions)
}

func TestPodFailurePolicyFailJob(t *testing.T) {
	e := start(t, job.Options{BackoffBase: 100 * time.Millisecond})
	j := newJob("pfp", "42")
	j.Spec.BackoffLimit = ptr(int32(6))
	j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{Action: batchv1.PodFailurePolicyActionFailJob, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
			Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{42}}},
	}}
	createJob(t, e, j)
	j = waitCondition(t, e, "pfp", batchv1.JobFailed)
	wantFinished(t, j, batchv1.JobFailed, batchv1.JobFailureTarget, batchv1.JobReasonPodFailurePolicy)
	if msg := jobCondition(j, batchv1.JobFailed).Message; !strings.Contains(msg, "failed with exit code 42 matching FailJob rule at index 0") {
		t.Fatalf("message %q", msg)
	}
	if j.Status.Failed != 1 || j.Status.Active != 0 {
		t.Fatalf("status %+v: one failure fails the job", j.Status)
	}
}

// A failure with the DisruptionTarget condition (an eviction) is ignored:
// not counted against backoffLimit 0, and the pod is replaced.
func TestPodFailurePolicyIgnoreDisruption(t *testing.T) {
	e := start(t, job.Options{BackoffBase: 100 * time.Millisecond})
	j := newJob("evicted", "")
	delete(j.Spec.Template.Annotations, controllertest.AnnotationExit)
	j.Spec.BackoffLimit = ptr(int32(0))
	j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{
			{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}}},
	}}
	createJob(t, e, j)
	var first *corev1.Pod
	e.WaitFor(20*time.Second, "a running pod", func() error {
		pods, err := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{LabelSelector: "job-name=evicted"})
		if err != nil {
			return err
		}
		for i := range pods.Items {
			if pods.Items[i].Status.Phase == corev1.PodRunning {
				first = &pods.Items[i]
				return nil
			}
		}
		return controllertest.Errorf("%d pods, none running", len(pods.Items))
	})
	first.Status.Phase = corev1.PodFailed
	first.Status.Conditions = append(first.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget,
		Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI", LastTransitionTime: metav1.Now()})
	if _, err := e.Client.CoreV1().Pods("default").UpdateStatus(e.Ctx, first, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(20*time.Second, "a replacement pod", func() error {
		pods, err := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{LabelSelector: "job-name=evicted"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.UID != first.UID && p.Status.Phase == corev1.PodRunning {
				return nil
			}
		}
		return controllertest.Errorf("%d pods, no replacement running", len(pods.Items))
	})
	e.WaitFor(10*time.Second, "the evicted pod's finalizer gone", func() error {
		p, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, first.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.Finalizers) != 0 {
			return controllertest.Errorf("finalizers %v", p.Finalizers)
		}
		return nil
	})
	got, err := e.Client.BatchV1().Jobs("default").Get(e.Ctx, "evicted", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Failed != 0 || jobCondition(got, batchv1.JobFailed) != nil || jobCondition(got, batchv1.JobFailureTarget) != nil {
		t.Fatalf("an ignored failure counted: %+v", got.Status)
	}
}

func TestBackoffLimitPerIndex(t *testing.T) {
	e := start(t, job.Options{BackoffBase: 100 * time.Millisecond})
	j := newJob("perindex", "0")
	indexed(j, 4)
	j.Spec.Template.Annotations[controllertest.AnnotationExitByIndex] = "1=1,3=1"
	j.Spec.BackoffLimitPerIndex = ptr(int32(1))
	createJob(t, e, j)
	j = waitCondition(t, e, "perindex", batchv1.JobFailed)
	wantFinished(t, j, batchv1.JobFailed, batchv1.JobFailureTarget, batchv1.JobReasonFailedIndexes)
	if j.Status.FailedIndexes == nil || *j.Status.FailedIndexes != "1,3" || j.Status.CompletedIndexes != "0,2" ||
		j.Status.Failed != 4 || j.Status.Succeeded != 2 {
		t.Fatalf("status %+v: want indexes 1,3 failed twice each, 0,2 completed", j.Status)
	}
	pods, err := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{LabelSelector: batchv1.JobCompletionIndexAnnotation + "=1"})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]bool{}
	for _, p := range pods.Items {
		counts[p.Annotations[batchv1.JobIndexFailureCountAnnotation]] = true
	}
	if len(pods.Items) != 2 || !counts["0"] || !counts["1"] {
		t.Fatalf("index 1: %d pods with failure counts %v, want 2 with 0 and 1", len(pods.Items), counts)
	}
}

func TestFailIndexAndMaxFailedIndexes(t *testing.T) {
	e := start(t, job.Options{BackoffBase: 100 * time.Millisecond})
	j := newJob("failindex", "0")
	indexed(j, 4)
	j.Spec.Parallelism = ptr(int32(1))
	j.Spec.Template.Annotations[controllertest.AnnotationExitByIndex] = "0=3,1=3"
	j.Spec.BackoffLimitPerIndex = ptr(int32(5))
	j.Spec.MaxFailedIndexes = ptr(int32(1))
	j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{Action: batchv1.PodFailurePolicyActionFailIndex, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
			Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{3}}},
	}}
	createJob(t, e, j)
	j = waitCondition(t, e, "failindex", batchv1.JobFailed)
	wantFinished(t, j, batchv1.JobFailed, batchv1.JobFailureTarget, batchv1.JobReasonMaxFailedIndexesExceeded)
	// FailIndex fails an index at its first failure, whatever the
	// per-index limit: two pods, two failed indexes.
	if j.Status.FailedIndexes == nil || *j.Status.FailedIndexes != "0,1" || j.Status.Failed != 2 {
		t.Fatalf("status %+v", j.Status)
	}
}

func TestSuccessPolicy(t *testing.T) {
	e := start(t, job.Options{})
	j := newJob("leader", "")
	delete(j.Spec.Template.Annotations, controllertest.AnnotationExit)
	indexed(j, 3)
	j.Spec.Template.Annotations[controllertest.AnnotationExitByIndex] = "0=0"
	j.Spec.SuccessPolicy = &batchv1.SuccessPolicy{Rules: []batchv1.SuccessPolicyRule{{SucceededIndexes: ptr("0")}}}
	createJob(t, e, j)
	j = waitCondition(t, e, "leader", batchv1.JobComplete)
	wantFinished(t, j, batchv1.JobComplete, batchv1.JobSuccessCriteriaMet, batchv1.JobReasonSuccessPolicy)
	if msg := jobCondition(j, batchv1.JobComplete).Message; msg != "Matched rules at index 0" {
		t.Fatalf("message %q", msg)
	}
	if j.Status.CompletedIndexes != "0" || j.Status.Succeeded != 1 || j.Status.Failed != 0 || j.Status.Active != 0 || j.Status.CompletionTime == nil {
		t.Fatalf("status %+v", j.Status)
	}
	e.WaitFor(10*time.Second, "the other indexes' pods gone", func() error {
		pods, err := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{LabelSelector: "job-name=leader"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				return controllertest.Errorf("pod %s still running", p.Name)
			}
		}
		return nil
	})
}

// A pod released by its job (labels changed) or orphaned loses the
// tracking finalizer, so that it can be deleted.
func TestReleasedAndOrphanPodsLoseFinalizer(t *testing.T) {
	e := start(t, job.Options{})
	j := newJob("rel", "")
	delete(j.Spec.Template.Annotations, controllertest.AnnotationExit)
	createJob(t, e, j)
	var pod *corev1.Pod
	e.WaitFor(20*time.Second, "a pod with the tracking finalizer", func() error {
		pods, err := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{LabelSelector: "job-name=rel"})
		if err != nil {
			return err
		}
		if len(pods.Items) == 0 || len(pods.Items[0].Finalizers) == 0 {
			return controllertest.Errorf("%d pods", len(pods.Items))
		}
		pod = &pods.Items[0]
		return nil
	})
	patch := []byte(`{"metadata":{"labels":{"job-name":null,"batch.kubernetes.io/job-name":null,"controller-uid":null,"batch.kubernetes.io/controller-uid":null}}}`)
	if _, err := e.Client.CoreV1().Pods("default").Patch(e.Ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(20*time.Second, "the released pod without owner and finalizer", func() error {
		p, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.Finalizers) != 0 || len(p.OwnerReferences) != 0 {
			return controllertest.Errorf("finalizers %v owners %v", p.Finalizers, p.OwnerReferences)
		}
		return nil
	})

	orphan := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orphan", Namespace: "default", Finalizers: []string{batchv1.JobTrackingFinalizer}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}},
	}
	if _, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, orphan, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.CoreV1().Pods("default").Delete(e.Ctx, "orphan", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(20*time.Second, "the orphan pod deleted", func() error {
		p, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, "orphan", metav1.GetOptions{})
		if err == nil {
			return controllertest.Errorf("still there: finalizers %v", p.Finalizers)
		}
		return nil
	})
}
