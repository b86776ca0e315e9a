package hollow

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

type recorder struct {
	mu   sync.Mutex
	seen map[string]string // pod name → last event
}

func (r *recorder) handler() cache.ResourceEventHandler {
	set := func(obj any, ev string) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.seen[obj.(*corev1.Pod).Name] = ev
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { set(obj, "add") },
		UpdateFunc: func(_, obj any) { set(obj, "update") },
		DeleteFunc: func(obj any) { set(obj, "delete") },
	}
}

func (r *recorder) get() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for k, v := range r.seen {
		out[k] = v
	}
	return out
}

func boundPod(name, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{NodeName: node}}
}

func TestDispatcherViewsPerNode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := fake.NewSimpleClientset(boundPod("early", "h-0"), boundPod("elsewhere", "other"))
	d := newDispatcher([]string{"h-0", "h-1"})
	f := informers.NewSharedInformerFactory(cs, 0)
	if err := d.attach(f.Core().V1().Pods().Informer()); err != nil {
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), d.views["h-0"].HasSynced) {
		t.Fatal("not synced")
	}
	// A handler added after the sync is replayed what the view holds.
	r0, r1 := &recorder{seen: map[string]string{}}, &recorder{seen: map[string]string{}}
	if _, err := d.views["h-0"].AddEventHandler(r0.handler()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.views["h-1"].AddEventHandler(r1.handler()); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, boundPod("late", "h-1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Pods("default").Delete(ctx, "early", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g0, g1 := r0.get(), r1.get()
		if g0["early"] == "delete" && g1["late"] == "add" && len(g0) == 1 && len(g1) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("h-0 saw %v, h-1 saw %v", g0, g1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(d.views["h-0"].GetStore().List()); n != 0 {
		t.Errorf("h-0 store holds %d pods after the delete", n)
	}
	if keys := d.views["h-1"].GetStore().ListKeys(); len(keys) != 1 || keys[0] != "default/late" {
		t.Errorf("h-1 store %v", keys)
	}
}
