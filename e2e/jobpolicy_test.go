package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// testJobPolicies (in TestControllers, on hollow nodes): a FailJob rule of
// a pod failure policy fails the job at the first matching exit code
// (FailureTarget then Failed, reason PodFailurePolicy); a pod released by
// relabelling with kubectl loses the job-tracking finalizer, so that
// `kubectl delete` removes it.
func testJobPolicies(t *testing.T, m *testutil.Master, cs kubernetes.Interface) {
	ctx := context.Background()
	ns := "jobpolicy"
	ctlNamespace(t, cs, ns)
	jobs := cs.BatchV1().Jobs(ns)
	fail := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "fail-fast"}, Spec: batchv1.JobSpec{BackoffLimit: ptrTo(int32(5)),
		PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{Action: batchv1.PodFailurePolicyActionFailJob,
			OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{42}}}}},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "main", Image: "example.com/job:1", Args: []string{"exit=42"}}}}}}}
	if _, err := jobs.Create(ctx, fail, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "job failed by its pod failure policy", func() error {
		j, err := jobs.Get(ctx, "fail-fast", metav1.GetOptions{})
		if err != nil {
			return err
		}
		var target, failed bool
		for _, c := range j.Status.Conditions {
			ok := c.Status == corev1.ConditionTrue && c.Reason == batchv1.JobReasonPodFailurePolicy
			target = target || (ok && c.Type == batchv1.JobFailureTarget)
			failed = failed || (ok && c.Type == batchv1.JobFailed)
		}
		if !target || !failed || j.Status.Failed != 1 {
			return fmt.Errorf("status %+v", j.Status)
		}
		return nil
	})

	long := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "long"}, Spec: batchv1.JobSpec{
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "main", Image: "example.com/job:1"}}}}}}
	if _, err := jobs.Create(ctx, long, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod string
	testutil.WaitFor(t, 60*time.Second, "a running pod of the job", func() error {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=long"})
		if err != nil {
			return err
		}
		for _, p := range l.Items {
			if p.Status.Phase == corev1.PodRunning {
				pod = p.Name
				return nil
			}
		}
		return fmt.Errorf("%d pods, none running", len(l.Items))
	})
	if _, ok := kubectlIfInstalled(t, m, "-n", ns, "label", "pod", pod, "job-name-", "batch.kubernetes.io/job-name-",
		"controller-uid-", "batch.kubernetes.io/controller-uid-"); !ok {
		t.Skip("kubectl not installed")
	}
	testutil.WaitFor(t, 30*time.Second, "the released pod without the tracking finalizer", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.Finalizers) != 0 || metav1.GetControllerOf(p) != nil {
			return fmt.Errorf("finalizers %v owners %v", p.Finalizers, p.OwnerReferences)
		}
		return nil
	})
	kubectlIfInstalled(t, m, "-n", ns, "delete", "pod", pod, "--wait=false")
	testutil.WaitFor(t, 60*time.Second, "the released pod deleted", func() error {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}
