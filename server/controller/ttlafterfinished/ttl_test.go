package ttlafterfinished_test

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/ttlafterfinished"
)

func TestFinishedJobDeletedAfterTTL(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	c := ttlafterfinished.New(e.CC)
	e.Start(func(ctx context.Context) { c.Run(ctx, 1) })
	ttl := int32(2) // timestamps have 1 s resolution: at least 1 s then
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "j"}, Spec: batchv1.JobSpec{TTLSecondsAfterFinished: &ttl,
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "i"}}}}}}
	j, err := e.Client.BatchV1().Jobs("default").Create(e.Ctx, j, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	j.Status.StartTime, j.Status.CompletionTime = &now, &now
	j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now}}
	if _, err := e.Client.BatchV1().Jobs("default").UpdateStatus(e.Ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	e.WaitFor(10*time.Second, "job deleted", func() error {
		j, err := e.Client.BatchV1().Jobs("default").Get(e.Ctx, "j", metav1.GetOptions{})
		// Foreground: the job may linger with the finalizer (no GC here).
		if apierrors.IsNotFound(err) || (err == nil && j.DeletionTimestamp != nil) {
			return nil
		}
		return controllertest.Errorf("job still there: %v", err)
	})
	if time.Since(begin) < 900*time.Millisecond {
		t.Fatal("deleted before its TTL")
	}
}
