package cronjob

import (
	"context"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/controller/controllertest"
)

func TestMostRecent(t *testing.T) {
	created := time.Date(2026, 1, 1, 10, 0, 30, 0, time.UTC)
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)},
		Spec: batchv1.CronJobSpec{Schedule: "*/5 * * * *"}}
	s, _, err := schedule(cj)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		now          time.Time
		last         string
		missed       int
		next         string
		deadlineSecs *int64
	}{
		{created.Add(time.Minute), "", 0, "10:05", nil},
		{created.Add(5 * time.Minute), "10:05", 1, "10:10", nil},
		{created.Add(16 * time.Minute), "10:15", 3, "10:20", nil},
		// A deadline of 60 s forgets start times older than that.
		{created.Add(16 * time.Minute), "", 0, "10:20", ptr(int64(60))},
	} {
		cj.Spec.StartingDeadlineSeconds = tc.deadlineSecs
		last, missed, next := mostRecent(cj, s, tc.now)
		got := ""
		if last != nil {
			got = last.Format("15:04")
		}
		if got != tc.last || missed != tc.missed || next.Format("15:04") != tc.next {
			t.Errorf("now %v: got %q %d %v, want %q %d %s", tc.now, got, missed, next, tc.last, tc.missed, tc.next)
		}
	}
	cj.Spec.Schedule = "not a schedule"
	if _, _, err := schedule(cj); err == nil {
		t.Fatal("bad schedule accepted")
	}
}

func ptr[T any](v T) *T { return &v }

// clock is a settable clock for the controller.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func TestCronJobFiresWithConcurrencyAndHistory(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	clk := &clock{t: time.Now()}
	e.CC.Now = clk.now
	c := New(e.CC)
	e.Start(func(ctx context.Context) { c.Run(ctx, 1) })
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "tick", Namespace: "default"},
		Spec: batchv1.CronJobSpec{
			Schedule: "* * * * *", ConcurrencyPolicy: batchv1.ForbidConcurrent,
			SuccessfulJobsHistoryLimit: ptr(int32(1)),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "img"}}},
			}}},
		},
	}
	cj, err := e.Client.BatchV1().CronJobs("default").Create(e.Ctx, cj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	jobs := func() []batchv1.Job {
		l, err := e.Client.BatchV1().Jobs("default").List(e.Ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	kick := func() {
		// A change of the cronjob makes it sync at once.
		p := []byte(`{"metadata":{"annotations":{"kick":"` + clk.now().Format(time.RFC3339Nano) + `"}}}`)
		if _, err := e.Client.BatchV1().CronJobs("default").Patch(e.Ctx, "tick", types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// One minute later: the first job.
	clk.set(cj.CreationTimestamp.Add(61 * time.Second))
	kick()
	e.WaitFor(10*time.Second, "first job", func() error {
		if n := len(jobs()); n != 1 {
			return controllertest.Errorf("%d jobs", n)
		}
		cur, _ := e.Client.BatchV1().CronJobs("default").Get(e.Ctx, "tick", metav1.GetOptions{})
		if len(cur.Status.Active) != 1 || cur.Status.LastScheduleTime == nil {
			return controllertest.Errorf("status %+v", cur.Status)
		}
		return nil
	})
	first := jobs()[0]
	if first.Annotations[batchv1.CronJobScheduledTimestampAnnotation] == "" || metav1.GetControllerOf(&first).Name != "tick" {
		t.Fatalf("job %+v", first.ObjectMeta)
	}
	// Forbid: the next minute starts nothing while the first runs.
	clk.set(clk.now().Add(time.Minute))
	kick()
	time.Sleep(300 * time.Millisecond) // nothing must happen; give it the chance
	if n := len(jobs()); n != 1 {
		t.Fatalf("Forbid: %d jobs", n)
	}
	// The first job completes; the next run starts, and the history keeps
	// one successful job.
	done := first.DeepCopy()
	now := metav1.NewTime(clk.now())
	done.Status.StartTime, done.Status.CompletionTime = &now, &now
	done.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	if _, err := e.Client.BatchV1().Jobs("default").UpdateStatus(e.Ctx, done, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.set(clk.now().Add(time.Minute))
	kick()
	e.WaitFor(10*time.Second, "second job", func() error {
		js := jobs()
		if len(js) != 2 {
			return controllertest.Errorf("%d jobs", len(js))
		}
		cur, _ := e.Client.BatchV1().CronJobs("default").Get(e.Ctx, "tick", metav1.GetOptions{})
		if cur.Status.LastSuccessfulTime == nil || len(cur.Status.Active) != 1 || cur.Status.Active[0].Name == first.Name {
			return controllertest.Errorf("status %+v", cur.Status)
		}
		return nil
	})
}
