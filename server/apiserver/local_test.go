package apiserver_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/apiserver"
	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

func (e *env) localPods(ns string) *apiserver.LocalListerWatcher {
	e.t.Helper()
	kind, ok := e.srv.API.Registry().Lookup("", "v1", "pods")
	if !ok {
		e.t.Fatal("no pods kind")
	}
	return e.srv.API.LocalListerWatcher(kind, ns)
}

func (e *env) createPod(name string, labels map[string]string) *corev1.Pod {
	e.t.Helper()
	p, err := e.cs.CoreV1().Pods("default").Create(e.ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create pod %s: %v", name, err)
	}
	return p
}

func (e *env) relabel(name string, labels map[string]string) *corev1.Pod {
	e.t.Helper()
	p, err := e.cs.CoreV1().Pods("default").Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	p.Labels = labels
	if p, err = e.cs.CoreV1().Pods("default").Update(e.ctx, p, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// nextEvent returns the next event that is not a bookmark.
func nextEvent(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch ended")
			}
			if ev.Type != watch.Bookmark {
				return ev
			}
		case <-timeout:
			t.Fatal("no watch event within 10s")
		}
	}
}

func expectPodEvent(t *testing.T, w watch.Interface, typ watch.EventType, name, rv string) {
	t.Helper()
	ev := nextEvent(t, w)
	p, ok := ev.Object.(*corev1.Pod)
	if !ok {
		t.Fatalf("event %s holds %T, want a pod", ev.Type, ev.Object)
	}
	if ev.Type != typ || p.Name != name || (rv != "" && p.ResourceVersion != rv) {
		t.Fatalf("got %s %s at %s, want %s %s at %s", ev.Type, p.Name, p.ResourceVersion, typ, name, rv)
	}
}

func TestLocalListerWatcherListAndWatch(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	a := e.createPod("a", map[string]string{"app": "x"})
	e.createPod("b", map[string]string{"app": "y"})
	lw := e.localPods("default")

	obj, err := lw.ListWithContext(e.ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	all := obj.(*corev1.PodList)
	if len(all.Items) != 2 {
		t.Fatalf("list: %d pods, want 2", len(all.Items))
	}
	snap, _ := e.srv.Store.Read(e.ctx, false, 0)
	if want := strconv.FormatUint(snap.Index(), 10); all.ResourceVersion != want {
		t.Fatalf("list resourceVersion %s, want the applied index %s", all.ResourceVersion, want)
	}
	for _, p := range all.Items {
		if p.Name == "a" && p.ResourceVersion != a.ResourceVersion {
			t.Fatalf("pod a listed at resourceVersion %s, created at %s", p.ResourceVersion, a.ResourceVersion)
		}
	}
	obj, err = lw.ListWithContext(e.ctx, metav1.ListOptions{LabelSelector: "app=x"})
	if err != nil {
		t.Fatal(err)
	}
	if l := obj.(*corev1.PodList); len(l.Items) != 1 || l.Items[0].Name != "a" {
		t.Fatalf("list app=x: %+v", l.Items)
	}
	if _, err := lw.ListWithContext(e.ctx, metav1.ListOptions{FieldSelector: "spec.bogus=1"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("unsupported field selector: got %v, want BadRequest", err)
	}

	// A watch from the list's resourceVersion with a label selector sees
	// objects enter and leave the selection as ADDED and DELETED.
	w, err := lw.WatchWithContext(e.ctx, metav1.ListOptions{ResourceVersion: all.ResourceVersion, LabelSelector: "app=x", AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	a2 := e.relabel("a", map[string]string{"app": "x", "v": "2"})
	expectPodEvent(t, w, watch.Modified, "a", a2.ResourceVersion)
	b2 := e.relabel("b", map[string]string{"app": "x"})
	expectPodEvent(t, w, watch.Added, "b", b2.ResourceVersion)
	a3 := e.relabel("a", map[string]string{"app": "z"})
	expectPodEvent(t, w, watch.Deleted, "a", a3.ResourceVersion)
	if err := e.cs.CoreV1().Pods("default").Delete(e.ctx, "b", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	expectPodEvent(t, w, watch.Deleted, "b", "")

	// Without a resourceVersion, a watch starts with the current objects.
	w2, err := lw.WatchWithContext(e.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	expectPodEvent(t, w2, watch.Added, "a", a3.ResourceVersion)
}

func TestLocalListerWatcherBookmarkAndStop(t *testing.T) {
	e := newEnv(t, apiservertest.Options{BookmarkIdle: 50 * time.Millisecond})
	lw := e.localPods("")
	snap, _ := e.srv.Store.Read(e.ctx, false, 0)
	w, err := lw.WatchWithContext(e.ctx, metav1.ListOptions{ResourceVersion: strconv.FormatUint(snap.Index(), 10), AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		p, ok := ev.Object.(*corev1.Pod)
		if ev.Type != watch.Bookmark || !ok || p.ResourceVersion != strconv.FormatUint(snap.Index(), 10) {
			t.Fatalf("got %s %T, want a BOOKMARK at %d", ev.Type, ev.Object, snap.Index())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no bookmark")
	}
	w.Stop()
	for range w.ResultChan() {
	}
	// A watch whose context ends closes its channel.
	ctx, cancel := context.WithCancel(e.ctx)
	w, err = lw.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: strconv.FormatUint(snap.Index(), 10)})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-w.ResultChan():
		case <-deadline:
			t.Fatal("watch did not end with its context")
		}
	}
}

func TestLocalListerWatcherExpired(t *testing.T) {
	e := newEnv(t, apiservertest.Options{RingSize: 4})
	for i := range 8 {
		e.createPod("p"+strconv.Itoa(i), nil)
	}
	_, err := e.localPods("default").WatchWithContext(e.ctx, metav1.ListOptions{ResourceVersion: "1"})
	if !apierrors.IsResourceExpired(err) {
		t.Fatalf("watch from an index that left the ring: got %v, want 410 Expired", err)
	}
}

func TestLocalListerWatcherInformer(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	e.createPod("before", nil)
	inf := cache.NewSharedIndexInformer(e.localPods(""), &corev1.Pod{}, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	e.createPod("after", nil)
	waitFor(t, "both pods in the informer", func() bool {
		_, ok1, _ := inf.GetStore().GetByKey("default/before")
		_, ok2, _ := inf.GetStore().GetByKey("default/after")
		return ok1 && ok2
	})
}
