package podgc_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller/controllertest"
	"github.com/skiff-io/skiff/server/controller/podgc"
)

func TestPodGC(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{})
	k := e.RunKubelet("n1")
	c := podgc.New(e.CC, podgc.Options{TerminatedThreshold: 2, Period: 100 * time.Millisecond, Quarantine: 200 * time.Millisecond})
	e.Start(c.Run)
	for i, name := range []string{"old", "mid", "new"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{controllertest.AnnotationExit: "0"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
		if _, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			time.Sleep(1100 * time.Millisecond) // creation timestamps have 1 s resolution
		}
	}
	e.WaitFor(10*time.Second, "oldest terminated pod collected", func() error {
		l, _ := e.Client.CoreV1().Pods("default").List(e.Ctx, metav1.ListOptions{})
		if len(l.Items) != 2 || l.Items[0].Name == "old" || l.Items[1].Name == "old" {
			return controllertest.Errorf("%d pods", len(l.Items))
		}
		return nil
	})
	// A pod bound to a node that is gone is collected after the quarantine.
	if err := k.AddNode(e.Ctx, "doomed", nil); err != nil {
		t.Fatal(err)
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stranded"}, Spec: corev1.PodSpec{NodeName: "doomed", Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
	if _, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.CoreV1().Nodes().Delete(e.Ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitFor(10*time.Second, "orphaned pod collected", func() error {
		if _, err := e.Client.CoreV1().Pods("default").Get(e.Ctx, "stranded", metav1.GetOptions{}); err == nil {
			return controllertest.Errorf("still there")
		}
		return nil
	})
	_ = context.Background
}
