package agent

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podWorkers runs one goroutine per pod. A worker syncs its pod serially
// whenever it is woken (the pod changed, one of its containers changed, a
// probe result changed, a back-off expired) and at least every resync
// interval; it ends once the pod is gone from the API and from the node.
type podWorkers struct {
	a  *Agent
	mu sync.Mutex
	w  map[types.UID]*podWorker
	wg sync.WaitGroup
	// stopping is closed by stopAll.
	stopping chan struct{}
	stopOnce sync.Once
	// ports holds the host ports of the admitted pods (hostports.go).
	ports hostPortTable
}

type podWorker struct {
	uid  types.UID
	wake chan struct{}
	mu   sync.Mutex
	pod  *corev1.Pod
	// gone: the pod was deleted from the API.
	gone bool
	// state the sync keeps between runs.
	st *podState
}

func newPodWorkers(a *Agent) *podWorkers {
	return &podWorkers{a: a, w: map[types.UID]*podWorker{}, stopping: make(chan struct{})}
}

// update gives a worker the newest pod, starting the worker if needed.
func (p *podWorkers) update(pod *corev1.Pod) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, ok := p.w[pod.UID]
	if !ok {
		select {
		case <-p.stopping:
			return
		default:
		}
		w = &podWorker{uid: pod.UID, wake: make(chan struct{}, 1), st: newPodState()}
		p.w[pod.UID] = w
		w.pod = pod
		p.wg.Add(1)
		go p.run(w)
		return
	}
	w.mu.Lock()
	w.pod = pod
	w.mu.Unlock()
	w.poke()
}

// remove tells the worker of pod that the pod is gone from the API; a pod
// never seen gets a worker that only cleans up.
func (p *podWorkers) remove(pod *corev1.Pod) {
	p.update(pod)
	p.mu.Lock()
	w := p.w[pod.UID]
	p.mu.Unlock()
	if w == nil {
		return
	}
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	w.poke()
}

// trigger wakes the worker of uid, if any.
func (p *podWorkers) trigger(uid types.UID) {
	p.mu.Lock()
	w := p.w[uid]
	p.mu.Unlock()
	if w != nil {
		w.poke()
	}
}

func (p *podWorkers) has(uid types.UID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.w[uid]
	return ok
}

// count is the number of pods with a worker.
func (p *podWorkers) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.w)
}

func (w *podWorker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (p *podWorkers) run(w *podWorker) {
	defer p.wg.Done()
	a := p.a
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-p.stopping:
			return
		case <-w.wake:
		case <-timer.C:
		}
		w.mu.Lock()
		pod, gone := w.pod, w.gone
		w.mu.Unlock()
		requeue, done := a.syncPod(ctx, pod, gone, w.st)
		if done {
			p.mu.Lock()
			// A pod re-added under the same UID cannot happen; just forget.
			delete(p.w, w.uid)
			delete(p.ports, w.uid)
			p.mu.Unlock()
			a.probes.removePod(w.uid)
			a.status.forget(w.uid)
			return
		}
		if requeue <= 0 || requeue > a.cfg.ResyncInterval {
			requeue = a.cfg.ResyncInterval
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(requeue)
	}
}

// stopAll stops every worker (the agent is stopping; containers keep
// running).
func (p *podWorkers) stopAll() {
	p.stopOnce.Do(func() { close(p.stopping) })
	p.wg.Wait()
}
