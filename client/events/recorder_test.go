package events

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func testPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "u1"},
		Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init"}}, Containers: []corev1.Container{{Name: "app"}}}}
}

// waitEvents polls the fake API until want events exist, and returns them
// by reason|fieldPath.
func waitEvents(t *testing.T, cs *fake.Clientset, want int, check func(map[string]corev1.Event) error) map[string]corev1.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		l, err := cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]corev1.Event{}
		for _, e := range l.Items {
			got[e.Reason+"|"+e.InvolvedObject.FieldPath] = e
		}
		if len(l.Items) == want {
			if last = check(got); last == nil {
				return got
			}
		} else {
			last = fmt.Errorf("%d events, want %d", len(l.Items), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(last)
	return nil
}

func TestRecorderCorrelatesRepeats(t *testing.T) {
	cs := fake.NewClientset()
	r := New(Config{Client: cs, Component: "kubelet", Host: "node-1"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	pod := testPod()
	r.Emit(PodRef(pod, "app"), corev1.EventTypeWarning, "BackOff", "", "Back-off restarting failed container app")
	got := waitEvents(t, cs, 1, func(map[string]corev1.Event) error { return nil })
	ev := got["BackOff|spec.containers{app}"]
	if ev.Source.Component != "kubelet" || ev.Source.Host != "node-1" || ev.ReportingInstance != "node-1" || ev.Count != 1 {
		t.Fatalf("event %+v", ev)
	}
	// The same event twice more: one object, count 3.
	r.Emit(PodRef(pod, "app"), corev1.EventTypeWarning, "BackOff", "", "Back-off restarting failed container app")
	r.Emit(PodRef(pod, "app"), corev1.EventTypeWarning, "BackOff", "", "Back-off restarting failed container app")
	// Another field path (the init container) is another event; EmitOnce
	// sends once only.
	for i := 0; i < 3; i++ {
		r.EmitOnce(PodRef(pod, "init"), corev1.EventTypeNormal, "Pulled", "", "already present")
	}
	waitEvents(t, cs, 2, func(got map[string]corev1.Event) error {
		if c := got["BackOff|spec.containers{app}"].Count; c != 3 {
			return fmt.Errorf("BackOff count %d, want 3", c)
		}
		if c := got["Pulled|spec.initContainers{init}"].Count; c != 1 {
			return fmt.Errorf("Pulled count %d, want 1", c)
		}
		return nil
	})
}

func TestRecorderDropsWhenFull(t *testing.T) {
	cs := fake.NewClientset()
	r := New(Config{Client: cs, Component: "default-scheduler", Queue: 2})
	// Not running: the queue fills and Emit must not block.
	emitted := make(chan struct{})
	go func() {
		for i := 0; i < 10; i++ {
			r.Emit(PodRef(testPod(), ""), corev1.EventTypeNormal, "Scheduled", "Binding", fmt.Sprintf("assigned %d", i))
		}
		close(emitted)
	}()
	select {
	case <-emitted:
	case <-time.After(10 * time.Second):
		t.Fatal("Emit blocked on a full queue")
	}
	r.mu.Lock()
	dropped := r.dropped
	r.mu.Unlock()
	if dropped != 8 {
		t.Fatalf("dropped %d, want 8", dropped)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	got := waitEvents(t, cs, 2, func(map[string]corev1.Event) error { return nil })
	ev := got["Scheduled|"]
	if ev.Action != "Binding" || ev.Source.Host != "" || ev.ReportingInstance != "default-scheduler" {
		t.Fatalf("event %+v", ev)
	}
}
