package job_test

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/job"
)

func ptr[T any](v T) *T { return &v }

func start(t *testing.T, opts job.Options) *controllertest.Env {
	e := controllertest.NewEnv(t, controllertest.Options{})
	e.RunKubelet("n1", "n2")
	c := job.New(e.CC, opts)
	e.Start(func(ctx context.Context) { c.Run(ctx, 2) })
	return e
}

func newJob(name, exit string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{controllertest.AnnotationExit: exit}},
				Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "img"}}},
			},
		},
	}
}

func waitCondition(t *testing.T, e *controllertest.Env, name string, ct batchv1.JobConditionType) *batchv1.Job {
	t.Helper()
	var j *batchv1.Job
	e.WaitFor(30*time.Second, string(ct)+" "+name, func() error {
		var err error
		if j, err = e.Client.BatchV1().Jobs("default").Get(e.Ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		for _, c := range j.Status.Conditions {
			if c.Type == ct && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return controllertest.Errorf("status %+v", j.Status)
	})
	return j
}

func TestCompletionsAndParallelism(t *testing.T) {
	e := start(t, job.Options{})
	j := newJob("ok", "0")
	j.Spec.Completions, j.Spec.Parallelism = ptr(int32(5)), ptr(int32(2))
	if _, err := e.Client.BatchV1().Jobs("default").Create(e.Ctx, j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	j = waitCondition(t, e, "ok", batchv1.JobComplete)
	if j.Status.Succeeded != 5 || j.Status.Failed != 0 || j.Status.CompletionTime == nil || j.Status.StartTime == nil {
		t.Fatalf("status %+v", j.Status)
	}
	pods, _ := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{})
	if len(pods.Items) != 5 {
		t.Fatalf("%d pods for 5 completions", len(pods.Items))
	}
	for _, p := range pods.Items {
		if len(p.Finalizers) != 0 {
			t.Fatalf("pod %s kept its tracking finalizer %v", p.Name, p.Finalizers)
		}
	}
}

func TestBackoffLimitWithExponentialBackoff(t *testing.T) {
	e := start(t, job.Options{BackoffBase: time.Second, BackoffMax: time.Minute})
	j := newJob("bad", "1")
	j.Spec.BackoffLimit = ptr(int32(2))
	begin := time.Now()
	if _, err := e.Client.BatchV1().Jobs("default").Create(e.Ctx, j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	j = waitCondition(t, e, "bad", batchv1.JobFailed)
	if j.Status.Failed != 3 || j.Status.Active != 0 {
		t.Fatalf("status %+v", j.Status)
	}
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Reason != batchv1.JobReasonBackoffLimitExceeded {
			t.Fatalf("reason %q", c.Reason)
		}
	}
	// Three pods, the second 1 s and the third 2 s after a failure. Finish
	// times have a 1 s resolution, which can eat up to a second of each
	// back-off: at least ~1 s in all, where no back-off takes milliseconds.
	if d := time.Since(begin); d < 900*time.Millisecond {
		t.Fatalf("three failures in %v: no back-off", d)
	}
	pods, _ := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{})
	if len(pods.Items) != 3 {
		t.Fatalf("%d pods, want 3", len(pods.Items))
	}
}

func TestIndexedCompletion(t *testing.T) {
	e := start(t, job.Options{})
	j := newJob("idx", "0")
	mode := batchv1.IndexedCompletion
	j.Spec.CompletionMode, j.Spec.Completions, j.Spec.Parallelism = &mode, ptr(int32(3)), ptr(int32(3))
	if _, err := e.Client.BatchV1().Jobs("default").Create(e.Ctx, j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	j = waitCondition(t, e, "idx", batchv1.JobComplete)
	if j.Status.CompletedIndexes != "0-2" {
		t.Fatalf("completedIndexes %q", j.Status.CompletedIndexes)
	}
	pods, _ := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{})
	seen := map[string]bool{}
	for _, p := range pods.Items {
		i := p.Annotations[batchv1.JobCompletionIndexAnnotation]
		if p.Spec.Hostname != "idx-"+i || seen[i] {
			t.Fatalf("pod %s: index %q hostname %q", p.Name, i, p.Spec.Hostname)
		}
		seen[i] = true
		if env := p.Spec.Containers[0].Env; len(env) != 1 || env[0].Name != "JOB_COMPLETION_INDEX" {
			t.Fatalf("env %+v", env)
		}
	}
}

func TestActiveDeadlineAndSuspend(t *testing.T) {
	e := start(t, job.Options{})
	j := newJob("long", "")
	delete(j.Spec.Template.Annotations, controllertest.AnnotationExit)
	j.Spec.ActiveDeadlineSeconds = ptr(int64(1))
	if _, err := e.Client.BatchV1().Jobs("default").Create(e.Ctx, j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	j = waitCondition(t, e, "long", batchv1.JobFailed)
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Reason != batchv1.JobReasonDeadlineExceeded {
			t.Fatalf("reason %q", c.Reason)
		}
	}
	e.WaitFor(10*time.Second, "pods of the failed job gone", func() error {
		pods, _ := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{})
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				return controllertest.Errorf("pod %s running", p.Name)
			}
		}
		return nil
	})

	s := newJob("susp", "0")
	s.Spec.Suspend = ptr(true)
	if _, err := e.Client.BatchV1().Jobs("default").Create(e.Ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, e, "susp", batchv1.JobSuspended)
	if pods, _ := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{LabelSelector: "job-name=susp"}); len(pods.Items) != 0 {
		t.Fatalf("suspended job has %d pods", len(pods.Items))
	}
	s, _ = e.Client.BatchV1().Jobs("default").Get(e.Ctx, "susp", metav1.GetOptions{})
	s.Spec.Suspend = ptr(false)
	if _, err := e.Client.BatchV1().Jobs("default").Update(e.Ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, e, "susp", batchv1.JobComplete)
}
