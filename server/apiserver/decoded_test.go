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

	got, ok := c.copyOf(v1, time.Now())
	if !ok || got == pod || got.Name != "p" || got.ResourceVersion != "5" {
		t.Fatalf("copyOf the remembered version: %v %v", got, ok)
	}
	got.Name = "changed"
	if pod.Name != "p" {
		t.Fatal("the copy shares the remembered pod")
	}
	if _, ok := c.copyOf(v2, time.Now()); ok {
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
	if _, ok := c.copyOf(v1, time.Now()); ok {
		t.Fatal("a collected pod was found")
	}
}

func TestDecodedPodsListed(t *testing.T) {
	var c decodedPods
	now := time.Now()
	key := state.Key{Resource: "pods", Namespace: "ns", Name: "p"}
	v := state.NewObject(key, "u", nil, 5, 5)
	bound := state.NewObject(state.Key{Resource: "pods", Namespace: "ns", Name: "b"}, "u2", nil, 6, 6)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"a": "b"}}}
	c.rememberListed(v, pod, now)
	c.rememberListed(bound, &corev1.Pod{Spec: corev1.PodSpec{NodeName: "n"}}, now)
	if c.len() != 1 {
		t.Fatalf("%d entries, want the unbound pod only", c.len())
	}
	got, ok := c.copyOf(v, now)
	if !ok || got.Name != "p" {
		t.Fatalf("copyOf a listed pod: %v %v", got, ok)
	}
	got.Labels["a"] = "changed"
	if pod.Labels["a"] != "b" {
		t.Fatal("the copy shares the listed pod's labels")
	}
	if _, ok := c.copyOf(v, now); ok {
		t.Fatal("a listed pod was handed out twice")
	}
	// Listed pods expire.
	c.rememberListed(v, pod, now)
	if _, ok := c.copyOf(v, now.Add(listedTTL+time.Second)); ok || c.len() != 0 {
		t.Fatalf("a listed pod outlived listedTTL (%d entries)", c.len())
	}
}
