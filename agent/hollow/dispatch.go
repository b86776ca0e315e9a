package hollow

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// dispatcher hands the events of one shared pod informer to per-node
// views, by spec.nodeName (which never changes once set).
type dispatcher struct {
	views map[string]*nodeView
	reg   cache.ResourceEventHandlerRegistration
}

func newDispatcher(names []string) *dispatcher {
	d := &dispatcher{views: make(map[string]*nodeView, len(names))}
	for _, n := range names {
		d.views[n] = &nodeView{d: d, store: cache.NewStore(cache.MetaNamespaceKeyFunc)}
	}
	return d
}

// attach subscribes to the shared informer; call it before the informer
// starts and before the nodes' agents run.
func (d *dispatcher) attach(inf cache.SharedIndexInformer) error {
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if v, pod := d.view(obj); v != nil {
				v.add(pod, initial)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			if v, pod := d.view(obj); v != nil {
				v.update(oldObj, pod)
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if v, pod := d.view(obj); v != nil {
				v.remove(pod)
			}
		},
	})
	d.reg = reg
	return err
}

func (d *dispatcher) view(obj any) (*nodeView, *corev1.Pod) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	return d.views[pod.Spec.NodeName], pod
}

// nodeView is one node's share of the pods: an agent.PodSource.
type nodeView struct {
	d     *dispatcher
	store cache.Store
	// mu orders store changes and handler calls against AddEventHandler,
	// so that a new handler sees each pod exactly once.
	mu       sync.RWMutex
	handlers []cache.ResourceEventHandler
}

func (v *nodeView) add(pod *corev1.Pod, initial bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_ = v.store.Add(pod)
	for _, h := range v.handlers {
		h.OnAdd(pod, initial)
	}
}

func (v *nodeView) update(old any, pod *corev1.Pod) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_ = v.store.Update(pod)
	for _, h := range v.handlers {
		h.OnUpdate(old, pod)
	}
}

func (v *nodeView) remove(pod *corev1.Pod) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_ = v.store.Delete(pod)
	for _, h := range v.handlers {
		h.OnDelete(pod)
	}
}

// AddEventHandler replays the node's pods as adds, then delivers changes.
func (v *nodeView) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, obj := range v.store.List() {
		h.OnAdd(obj, true)
	}
	v.handlers = append(v.handlers, h)
	return v.d.reg, nil
}

func (v *nodeView) GetStore() cache.Store { return v.store }

// HasSynced: the shared watch listed and delivered every pod.
func (v *nodeView) HasSynced() bool { return v.d.reg != nil && v.d.reg.HasSynced() }
