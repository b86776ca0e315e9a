package apiserver_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestEventsOneStore: events.k8s.io/v1 and core/v1 Events are one store,
// as in kube-apiserver (conformance "Events API should ensure that an
// event can be fetched, patched, deleted, and listed" lists an
// events.k8s.io event through core/v1 with fieldSelector source=...).
func TestEventsOneStore(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	now := metav1.NewMicroTime(time.Now().Truncate(time.Microsecond))
	w, err := e.cs.CoreV1().Events("default").Watch(e.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ev := &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Name: "ev1", Namespace: "default"},
		EventTime: now, ReportingController: "test-controller", ReportingInstance: "test-node",
		Action: "Do", Reason: "Test", Type: corev1.EventTypeNormal, Note: "hello",
		Regarding: corev1.ObjectReference{Kind: "Pod", Name: "x", Namespace: "default"}}
	if _, err := e.cs.EventsV1().Events("default").Create(e.ctx, ev, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Through core/v1: the same event, its fields renamed.
	l, err := e.cs.CoreV1().Events("default").List(e.ctx, metav1.ListOptions{FieldSelector: "source=test-controller"})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 || l.Items[0].Name != "ev1" || l.Items[0].Message != "hello" ||
		l.Items[0].InvolvedObject.Name != "x" || l.Items[0].ReportingController != "test-controller" {
		t.Fatalf("core/v1 list with source=test-controller: %+v", l.Items)
	}
	select {
	case got := <-w.ResultChan():
		if got.Type != watch.Added || got.Object.(*corev1.Event).Name != "ev1" {
			t.Fatalf("core/v1 watch: %s %#v", got.Type, got.Object)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("core/v1 watch saw no event for an events.k8s.io create")
	}
	// A core/v1 event through events.k8s.io/v1, field-selected by its
	// reportingController.
	core := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "ev2", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "y", Namespace: "default"},
		Reason:         "Other", Message: "world", Type: corev1.EventTypeWarning, Count: 3,
		Source: corev1.EventSource{Component: "kubelet"}, ReportingController: "kubelet", ReportingInstance: "node-1",
		FirstTimestamp: metav1.NewTime(now.Time), LastTimestamp: metav1.NewTime(now.Time)}
	if _, err := e.cs.CoreV1().Events("default").Create(e.ctx, core, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := e.cs.EventsV1().Events("default").Get(e.ctx, "ev2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Note != "world" || got.Regarding.Name != "y" || got.DeprecatedCount != 3 || got.DeprecatedSource.Component != "kubelet" {
		t.Fatalf("events.k8s.io/v1 view of a core event: %+v", got)
	}
	vl, err := e.cs.EventsV1().Events("default").List(e.ctx, metav1.ListOptions{FieldSelector: "reportingController=test-controller"})
	if err != nil || len(vl.Items) != 1 || vl.Items[0].Name != "ev1" {
		t.Fatalf("events.k8s.io list reportingController=test-controller: %v %+v", err, vl)
	}
	// Deleted through one API, gone from the other.
	if err := e.cs.EventsV1().Events("default").Delete(e.ctx, "ev2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().Events("default").Get(e.ctx, "ev2", metav1.GetOptions{}); err == nil {
		t.Fatal("an event deleted through events.k8s.io is still served by core/v1")
	}
}
