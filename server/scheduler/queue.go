package scheduler

import (
	"container/heap"
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// clusterEvent is a change that may make unschedulable pods schedulable.
type clusterEvent int

const (
	eventNodeAdd clusterEvent = iota
	eventNodeUpdate
	eventAssignedPodDelete
	eventAssignedPodChange // added or labels changed: affinity and spread
	eventForceFlush
)

// queuedPod is a pod waiting to be scheduled.
type queuedPod struct {
	pod      *corev1.Pod
	info     *PodInfo
	priority int32
	// added is when the pod entered the queue (FIFO within a priority);
	// attempts counts scheduling attempts (for back-off).
	added    time.Time
	attempts int
	// backoffUntil is when the pod may be tried again.
	backoffUntil time.Time
	// unschedulableSince is when it entered the unschedulable set.
	unschedulableSince time.Time
	// plugins that rejected it in its last attempt.
	plugins map[string]bool
	index   int // in a heap, -1 otherwise
}

// Queue holds unbound pods: activeQ (ready to try, highest priority first,
// then oldest), backoffQ (failed recently, waiting out their back-off) and
// unschedulable (waiting for a cluster change). A cluster change moves
// unschedulable pods to activeQ, or to backoffQ while their back-off runs;
// a pod left unschedulable for maxUnschedulable is retried anyway, as
// kube-scheduler does.
type Queue struct {
	mu            sync.Mutex
	cond          *sync.Cond
	active        podHeap
	backoff       podHeap
	unschedulable map[types.UID]*queuedPod
	// all maps every queued pod (in any of the three) and the in-flight one.
	all map[types.UID]*queuedPod
	// inFlight: popped, being scheduled.
	inFlight map[types.UID]bool
	// cycle counts pops; moveCycle is the cycle of the last cluster change:
	// a pod that fails in a cycle at or before a change goes to backoffQ
	// instead of waiting for another change.
	cycle, moveCycle int64
	closed           bool

	initialBackoff, maxBackoff, maxUnschedulable time.Duration
	now                                          func() time.Time

	// nominated maps node names to pods nominated there by preemption.
	nominated map[string]map[types.UID]*PodInfo
	nominee   map[types.UID]string
}

// NewQueue makes a queue with kube-scheduler's back-off (1s doubling to
// 10s) unless given.
func NewQueue(initialBackoff, maxBackoff, maxUnschedulable time.Duration, now func() time.Time) *Queue {
	if now == nil {
		now = time.Now
	}
	q := &Queue{
		active:         podHeap{less: activeLess},
		backoff:        podHeap{less: backoffLess},
		unschedulable:  map[types.UID]*queuedPod{},
		all:            map[types.UID]*queuedPod{},
		inFlight:       map[types.UID]bool{},
		initialBackoff: initialBackoff, maxBackoff: maxBackoff, maxUnschedulable: maxUnschedulable,
		now:       now,
		nominated: map[string]map[types.UID]*PodInfo{},
		nominee:   map[types.UID]string{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func activeLess(a, b *queuedPod) bool {
	if a.priority != b.priority {
		return a.priority > b.priority
	}
	return a.added.Before(b.added)
}

func backoffLess(a, b *queuedPod) bool { return a.backoffUntil.Before(b.backoffUntil) }

// Add queues a new unbound pod, or updates a queued one.
func (q *Queue) Add(pod *corev1.Pod, info *PodInfo) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if qp := q.all[pod.UID]; qp != nil {
		q.updateLocked(qp, pod, info)
		return
	}
	qp := &queuedPod{pod: pod, info: info, priority: info.Priority, added: q.now(), index: -1}
	q.all[pod.UID] = qp
	heap.Push(&q.active, qp)
	q.cond.Broadcast()
}

// updateLocked takes a newer version of a queued pod; an unschedulable pod
// whose spec or labels changed is tried again.
func (q *Queue) updateLocked(qp *queuedPod, pod *corev1.Pod, info *PodInfo) {
	changed := pod.Generation != qp.pod.Generation || !labelsEqual(pod.Labels, qp.pod.Labels) ||
		!tolerationsEqual(pod, qp.pod)
	qp.pod, qp.info, qp.priority = pod, info, info.Priority
	switch {
	case qp.index >= 0 && q.active.contains(qp):
		heap.Fix(&q.active, qp.index)
	case qp.index >= 0:
		heap.Fix(&q.backoff, qp.index)
	case q.unschedulable[pod.UID] != nil && changed:
		delete(q.unschedulable, pod.UID)
		q.requeueLocked(qp)
	}
}

func labelsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// tolerationsEqual: tolerations may change on an existing pod (additions
// only), which is a spec change without a generation bump on older API
// servers; compare them directly.
func tolerationsEqual(a, b *corev1.Pod) bool {
	if len(a.Spec.Tolerations) != len(b.Spec.Tolerations) {
		return false
	}
	for i := range a.Spec.Tolerations {
		if a.Spec.Tolerations[i] != b.Spec.Tolerations[i] {
			return false
		}
	}
	return true
}

// Delete removes a pod (deleted, or bound elsewhere).
func (q *Queue) Delete(uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleteNominatedLocked(uid)
	qp := q.all[uid]
	if qp == nil {
		return
	}
	delete(q.all, uid)
	delete(q.unschedulable, uid)
	if qp.index >= 0 {
		if q.active.contains(qp) {
			heap.Remove(&q.active, qp.index)
		} else {
			heap.Remove(&q.backoff, qp.index)
		}
	}
}

// Pop blocks until a pod is ready (or ctx ends) and returns it with the
// scheduling cycle number.
func (q *Queue) Pop(ctx context.Context) (*queuedPod, int64, bool) {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.closed = true
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.active.Len() == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil, 0, false
	}
	qp := heap.Pop(&q.active).(*queuedPod)
	qp.attempts++
	q.cycle++
	q.inFlight[qp.pod.UID] = true
	return qp, q.cycle, true
}

// Done ends the in-flight state of a popped pod that was bound (or
// dropped): it leaves the queue.
func (q *Queue) Done(uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.inFlight, uid)
	delete(q.all, uid)
	q.deleteNominatedLocked(uid)
}

// AddUnschedulable puts back a pod whose attempt in cycle failed. plugins
// name the plugins that rejected it (nil for an error: straight to
// backoffQ).
func (q *Queue) AddUnschedulable(qp *queuedPod, cycle int64, plugins map[string]bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	uid := qp.pod.UID
	delete(q.inFlight, uid)
	if q.all[uid] != qp {
		return // deleted meanwhile
	}
	qp.plugins = plugins
	if plugins == nil || q.moveCycle >= cycle {
		q.toBackoffLocked(qp)
		return
	}
	qp.unschedulableSince = q.now()
	q.unschedulable[uid] = qp
}

// Requeue puts a pod whose binding failed back, behind its back-off.
func (q *Queue) Requeue(qp *queuedPod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	uid := qp.pod.UID
	if q.all[uid] != nil {
		return // re-added by the informer meanwhile
	}
	q.all[uid] = qp
	q.toBackoffLocked(qp)
}

// backoffDuration is initial * 2^(attempts-1), at most max.
func (q *Queue) backoffDuration(qp *queuedPod) time.Duration {
	d := q.initialBackoff
	for i := 1; i < qp.attempts && d < q.maxBackoff; i++ {
		d *= 2
	}
	return min(d, q.maxBackoff)
}

func (q *Queue) toBackoffLocked(qp *queuedPod) {
	qp.backoffUntil = q.now().Add(q.backoffDuration(qp))
	heap.Push(&q.backoff, qp)
}

// requeueLocked moves a pod out of unschedulable to activeQ, or to backoffQ
// while its back-off runs.
func (q *Queue) requeueLocked(qp *queuedPod) {
	if qp.attempts > 0 && q.now().Before(qp.lastAttemptEnd(q)) {
		q.toBackoffLocked(qp)
		return
	}
	heap.Push(&q.active, qp)
	q.cond.Broadcast()
}

// lastAttemptEnd is when the pod's back-off after its last attempt ends.
func (qp *queuedPod) lastAttemptEnd(q *Queue) time.Time {
	if qp.unschedulableSince.IsZero() {
		return time.Time{}
	}
	return qp.unschedulableSince.Add(q.backoffDuration(qp))
}

// MoveAll moves the unschedulable pods that ev may help (rejected by a
// plugin ev matters to) to activeQ or backoffQ.
func (q *Queue) MoveAll(ev clusterEvent) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.moveCycle = q.cycle
	for uid, qp := range q.unschedulable {
		if !eventHelps(ev, qp.plugins) {
			continue
		}
		delete(q.unschedulable, uid)
		q.requeueLocked(qp)
	}
}

// eventHelps: which rejections a cluster change can undo.
func eventHelps(ev clusterEvent, plugins map[string]bool) bool {
	switch ev {
	case eventNodeAdd, eventNodeUpdate, eventForceFlush:
		return true
	case eventAssignedPodDelete:
		return len(plugins) == 0 || plugins["NodeResourcesFit"] || plugins["NodePorts"] || plugins["InterPodAffinity"] ||
			plugins["PodTopologySpread"] || plugins["DefaultPreemption"]
	case eventAssignedPodChange:
		return len(plugins) == 0 || plugins["InterPodAffinity"] || plugins["PodTopologySpread"]
	}
	return true
}

// flush moves backoffQ pods whose back-off ended to activeQ, and pods
// unschedulable for longer than maxUnschedulable too.
func (q *Queue) flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	moved := false
	for q.backoff.Len() > 0 && !q.backoff.items[0].backoffUntil.After(now) {
		qp := heap.Pop(&q.backoff).(*queuedPod)
		heap.Push(&q.active, qp)
		moved = true
	}
	for uid, qp := range q.unschedulable {
		if now.Sub(qp.unschedulableSince) > q.maxUnschedulable {
			delete(q.unschedulable, uid)
			heap.Push(&q.active, qp)
			moved = true
		}
	}
	if moved {
		q.cond.Broadcast()
	}
}

// Len returns the numbers of pods in activeQ, backoffQ and unschedulable.
func (q *Queue) Len() (active, backoff, unschedulable int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active.Len(), q.backoff.Len(), len(q.unschedulable)
}

// Has reports whether the pod is queued or in flight.
func (q *Queue) Has(uid types.UID) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.all[uid] != nil
}

// SetNominated records that preemption nominated node for the pod ("" to
// clear).
func (q *Queue) SetNominated(info *PodInfo, node string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	uid := info.Pod.UID
	q.deleteNominatedLocked(uid)
	if node == "" {
		return
	}
	if q.nominated[node] == nil {
		q.nominated[node] = map[types.UID]*PodInfo{}
	}
	q.nominated[node][uid] = info
	q.nominee[uid] = node
}

func (q *Queue) deleteNominatedLocked(uid types.UID) {
	node, ok := q.nominee[uid]
	if !ok {
		return
	}
	delete(q.nominee, uid)
	delete(q.nominated[node], uid)
	if len(q.nominated[node]) == 0 {
		delete(q.nominated, node)
	}
}

// Nominated returns a copy of the nominations: node → pods.
func (q *Queue) Nominated() map[string][]*PodInfo {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.nominated) == 0 {
		return nil
	}
	out := make(map[string][]*PodInfo, len(q.nominated))
	for node, pods := range q.nominated {
		for _, p := range pods {
			out[node] = append(out[node], p)
		}
	}
	return out
}

// podHeap is a heap of queued pods ordered by less.
type podHeap struct {
	items []*queuedPod
	less  func(a, b *queuedPod) bool
}

func (h *podHeap) Len() int           { return len(h.items) }
func (h *podHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *podHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].index, h.items[j].index = i, j
}
func (h *podHeap) Push(x any) {
	qp := x.(*queuedPod)
	qp.index = len(h.items)
	h.items = append(h.items, qp)
}
func (h *podHeap) Pop() any {
	n := len(h.items)
	qp := h.items[n-1]
	h.items[n-1] = nil
	h.items = h.items[:n-1]
	qp.index = -1
	return qp
}

func (h *podHeap) contains(qp *queuedPod) bool {
	return qp.index >= 0 && qp.index < len(h.items) && h.items[qp.index] == qp
}
