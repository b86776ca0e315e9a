package apiserver

import (
	"runtime"
	"sync"
	"time"
	"weak"

	corev1 "k8s.io/api/core/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm/state"
)

// decodedPods remembers the decoded form of pod versions the leader's
// informers hold (through LocalListerWatcher), so a pods/binding copies one
// (DeepCopy, several times cheaper) instead of decoding the stored JSON
// again:
//   - pods from watch events, by weak reference: an entry goes when
//     nothing else holds its pod any more, so it pins no memory;
//   - unbound pods from a list (what a new leader's scheduler binds
//     first), by strong reference, each until its first use or until the
//     list is a minute old (client-go copies listed items, so a weak
//     reference would not last).
//
// The objects are shared and never modified. The zero value is ready to
// use.
type decodedPods struct {
	mu sync.Mutex
	m  map[podVersion]weak.Pointer[corev1.Pod]
	// listed holds unbound pods of recent lists; listedAt is the first
	// of those lists.
	listed   map[podVersion]*corev1.Pod
	listedAt time.Time
}

// listedTTL bounds how long listed pods are kept.
const listedTTL = time.Minute

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

// rememberListed records pod, listed from the stored object o at its
// ModifyIndex, if it is not bound yet.
func (c *decodedPods) rememberListed(o *state.Object, pod *corev1.Pod, now time.Time) {
	if pod.Spec.NodeName != "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireListed(now)
	if c.listed == nil {
		c.listed, c.listedAt = map[podVersion]*corev1.Pod{}, now
	}
	c.listed[podVersion{o.ID, o.ModifyIndex}] = pod
}

// expireListed drops the listed pods once the first list is listedTTL old.
func (c *decodedPods) expireListed(now time.Time) {
	if c.listed != nil && now.Sub(c.listedAt) > listedTTL {
		c.listed = nil
	}
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
func (c *decodedPods) copyOf(o *state.Object, now time.Time) (*corev1.Pod, bool) {
	v := podVersion{o.ID, o.ModifyIndex}
	c.mu.Lock()
	wp, ok := c.m[v]
	c.expireListed(now)
	listed := c.listed[v]
	if listed != nil {
		delete(c.listed, v)
	}
	c.mu.Unlock()
	if listed != nil {
		return listed.DeepCopy(), true
	}
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
	return len(c.m) + len(c.listed)
}
