// Package replicaset is the ReplicaSet and ReplicationController
// controller: it keeps spec.replicas active pods matching the selector,
// adopting orphans and releasing pods that stopped matching, and reports
// replicas, ready and available pods in status. ReplicationControllers are
// converted to ReplicaSets and run through the same code, as Kubernetes
// does.
package replicaset

import (
	"context"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/server/controller"
)

// BurstReplicas bounds the pods created or deleted in one sync.
const BurstReplicas = 500

// Controller reconciles ReplicaSets (or ReplicationControllers).
type Controller struct {
	cc       *controller.Context
	kind     *adapter
	pods     corelisters.PodLister
	podInf   cache.SharedIndexInformer
	queue    controller.Queue
	exp      *controller.Expectations
	recorder record.EventRecorder
	log      *slog.Logger
}

// NewReplicaSet returns the ReplicaSet controller.
func NewReplicaSet(cc *controller.Context) *Controller {
	return newController(cc, replicaSetAdapter(cc), "replicaset-controller")
}

// NewReplicationController returns the ReplicationController controller.
func NewReplicationController(cc *controller.Context) *Controller {
	return newController(cc, replicationControllerAdapter(cc), "replication-controller")
}

func newController(cc *controller.Context, a *adapter, component string) *Controller {
	c := &Controller{
		cc:       cc,
		kind:     a,
		pods:     cc.Informers.Core().V1().Pods().Lister(),
		podInf:   cc.Informers.Core().V1().Pods().Informer(),
		queue:    controller.NewQueue(component, 0),
		exp:      controller.NewExpectations(),
		recorder: cc.Recorder(component),
		log:      cc.Log(component),
	}
	controller.AddHandler(a.informer, cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: func(obj any) {
			if key, ok := controller.KeyOf(obj); ok {
				c.exp.Delete(key)
				c.queue.Add(key)
			}
		},
	}, c.log)
	controller.AddHandler(c.podInf, cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addPod,
		UpdateFunc: c.updatePod,
		DeleteFunc: c.deletePod,
	}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.kind.informer, c.podInf) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) enqueue(obj any) {
	if key, ok := controller.KeyOf(obj); ok {
		c.queue.Add(key)
	}
}

// ownerKey returns the key of the set that controls pod through ref, if it
// is one of ours.
func (c *Controller) ownerKey(pod *corev1.Pod, ref *metav1.OwnerReference) (string, bool) {
	if ref.Kind != c.kind.gvk.Kind || ref.APIVersion != c.kind.gvk.GroupVersion().String() {
		return "", false
	}
	rs, err := c.kind.get(pod.Namespace, ref.Name)
	if err != nil || rs.UID != ref.UID {
		return "", false
	}
	return pod.Namespace + "/" + ref.Name, true
}

// enqueueMatching enqueues the sets whose selector matches an orphan pod.
func (c *Controller) enqueueMatching(pod *corev1.Pod) {
	sets, err := c.kind.list(pod.Namespace)
	if err != nil {
		return
	}
	for _, rs := range sets {
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		c.queue.Add(rs.Namespace + "/" + rs.Name)
	}
}

func (c *Controller) addPod(obj any) {
	pod := obj.(*corev1.Pod)
	if pod.DeletionTimestamp != nil {
		c.deletePod(pod)
		return
	}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		if key, ok := c.ownerKey(pod, ref); ok {
			c.exp.CreationObserved(key)
			c.queue.Add(key)
		}
		return
	}
	c.enqueueMatching(pod)
}

func (c *Controller) updatePod(oldObj, obj any) {
	old, pod := oldObj.(*corev1.Pod), obj.(*corev1.Pod)
	if old.ResourceVersion == pod.ResourceVersion {
		return
	}
	if pod.DeletionTimestamp != nil {
		c.deletePod(pod)
		return
	}
	oldRef, ref := metav1.GetControllerOf(old), metav1.GetControllerOf(pod)
	if oldRef != nil && (ref == nil || oldRef.UID != ref.UID) {
		if key, ok := c.ownerKey(old, oldRef); ok {
			c.queue.Add(key)
		}
	}
	if ref == nil {
		if !labels.Equals(old.Labels, pod.Labels) || oldRef != nil {
			c.enqueueMatching(pod)
		}
		return
	}
	key, ok := c.ownerKey(pod, ref)
	if !ok {
		return
	}
	c.queue.Add(key)
	// A pod that just became ready becomes available after minReadySeconds.
	if !controller.IsPodReady(old) && controller.IsPodReady(pod) {
		if rs, err := c.kind.get(pod.Namespace, ref.Name); err == nil && rs.Spec.MinReadySeconds > 0 {
			c.queue.AddAfter(key, time.Duration(rs.Spec.MinReadySeconds)*time.Second+time.Second)
		}
	}
}

func (c *Controller) deletePod(obj any) {
	pod, ok := controller.Unwrap[*corev1.Pod](obj)
	if !ok {
		return
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return
	}
	if key, ok := c.ownerKey(pod, ref); ok {
		c.exp.PodDeletionObserved(key, pod.Namespace+"/"+pod.Name)
		c.queue.Add(key)
	}
}

// adapter is what the controller needs of its kind: ReplicaSets as they
// are, ReplicationControllers converted.
type adapter struct {
	gvk      schema.GroupVersionKind
	informer cache.SharedIndexInformer
	get      func(ns, name string) (*appsv1.ReplicaSet, error)
	list     func(ns string) ([]*appsv1.ReplicaSet, error)
	// original returns the stored object (for events).
	original func(rs *appsv1.ReplicaSet) runtime.Object
	// fresh reads the object from the API (adoption checks).
	fresh func(ctx context.Context, ns, name string) (metav1.Object, error)
	// updateStatus writes status to the object rs was read as.
	updateStatus func(ctx context.Context, rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus) error
}
