package apiserver

import (
	"runtime"
	"sync"
	"weak"

	corev1 "k8s.io/api/core/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm/state"
)

// decodedPods remembers the decoded form of the pod versions that
// something in this process still holds (the leader's informers, through
// LocalListerWatcher), so a pods/binding copies one (DeepCopy, several
// times cheaper) instead of decoding the stored JSON again. The references
// are weak: an entry goes when nothing else holds its pod any more, so the
// cache pins no memory. The objects are shared and never modified. The
// zero value is ready to use.
type decodedPods struct {
	mu sync.Mutex
	m  map[podVersion]weak.Pointer[corev1.Pod]
}

// podVersion names one version of one stored object: its ID and the Raft
// index of the change (an index alone may hold a batch of changes).
type podVersion struct {
	id    string
	index uint64
}

// remember records obj, the decoded form of the stored object o at its
// ModifyIndex, if it is a pod.
func (c *decodedPods) remember(o *state.Object, obj kruntime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	v := podVersion{o.ID, o.ModifyIndex}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[podVersion]weak.Pointer[corev1.Pod]{}
	}
	if old, ok := c.m[v]; ok && old.Value() != nil {
		return
	}
	wp := weak.Make(pod)
	c.m[v] = wp
	runtime.AddCleanup(pod, c.forget, v)
}

// forget drops v once its pod has been collected (unless it was
// remembered again meanwhile).
func (c *decodedPods) forget(v podVersion) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if wp, ok := c.m[v]; ok && wp.Value() == nil {
		delete(c.m, v)
	}
}

// copyOf returns a copy of the decoded pod stored as o, if one is known.
func (c *decodedPods) copyOf(o *state.Object) (*corev1.Pod, bool) {
	c.mu.Lock()
	wp, ok := c.m[podVersion{o.ID, o.ModifyIndex}]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	pod := wp.Value()
	if pod == nil {
		return nil, false
	}
	return pod.DeepCopy(), true
}

// len is the number of entries (tests).
func (c *decodedPods) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
