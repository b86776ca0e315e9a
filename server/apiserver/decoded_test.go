package apiserver

import (
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/fsm/state"
)

func TestDecodedPods(t *testing.T) {
	var c decodedPods
	key := state.Key{Resource: "pods", Namespace: "ns", Name: "p"}
	v1 := state.NewObject(key, "u", nil, 5, 5)
	v2 := state.NewObject(key, "u", nil, 5, 7)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", ResourceVersion: "5"}}
	c.remember(v1, pod)
	c.remember(v1, &corev1.ConfigMap{}) // not a pod: ignored

	got, ok := c.copyOf(v1)
	if !ok || got == pod || got.Name != "p" || got.ResourceVersion != "5" {
		t.Fatalf("copyOf the remembered version: %v %v", got, ok)
	}
	got.Name = "changed"
	if pod.Name != "p" {
		t.Fatal("the copy shares the remembered pod")
	}
	if _, ok := c.copyOf(v2); ok {
		t.Fatal("another version of the same pod was found")
	}

	// Once nothing holds the pod, its entry goes.
	runtime.KeepAlive(pod)
	pod = nil
	deadline := time.Now().Add(10 * time.Second)
	for c.len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries left after their pods were collected", c.len())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := c.copyOf(v1); ok {
		t.Fatal("a collected pod was found")
	}
}
