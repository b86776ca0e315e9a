// Package statefulset is the StatefulSet controller: pods with stable
// names <set>-<ordinal> (from spec.ordinals.start), hostname and
// subdomain (spec.serviceName); OrderedReady creates them one at a time in
// order, each Running and Ready before the next, and removes them in
// reverse order, while Parallel acts on all at once; RollingUpdate
// replaces pods from the highest ordinal down to the partition, one at a
// time, and OnDelete waits for the user. Each template is a
// ControllerRevision; status carries currentRevision and updateRevision
// for `kubectl rollout status|history|undo`.
package statefulset

import (
	"context"
	"log/slog"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "statefulset-controller"

var stsGVK = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

// Labels set on a set's pods (as Kubernetes).
const (
	podNameLabel  = appsv1.StatefulSetPodNameLabel
	podIndexLabel = appsv1.PodIndexLabel
)

// Controller reconciles StatefulSets.
type Controller struct {
	cc       *controller.Context
	sets     appslisters.StatefulSetLister
	pods     corelisters.PodLister
	setInf   cache.SharedIndexInformer
	podInf   cache.SharedIndexInformer
	history  *controller.History
	queue    controller.Queue
	recorder record.EventRecorder
	log      *slog.Logger
}

// New returns the controller.
func New(cc *controller.Context) *Controller {
	f := cc.Informers
	c := &Controller{
		cc:   cc,
		sets: f.Apps().V1().StatefulSets().Lister(), pods: f.Core().V1().Pods().Lister(),
		setInf: f.Apps().V1().StatefulSets().Informer(), podInf: f.Core().V1().Pods().Informer(),
		history:  &controller.History{Client: cc.Client, Informer: f.Apps().V1().ControllerRevisions().Informer()},
		queue:    controller.NewQueue(component, 0),
		recorder: cc.Recorder(component),
		log:      cc.Log(component),
	}
	controller.AddHandler(c.setInf, controller.Handler(c.queue), c.log)
	onPod := func(obj any) {
		p, ok := controller.Unwrap[*corev1.Pod](obj)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == stsGVK.Kind {
			c.queue.Add(p.Namespace + "/" + ref.Name)
			return
		}
		// An orphan may be adopted.
		sets, _ := c.sets.StatefulSets(p.Namespace).List(labels.Everything())
		for _, s := range sets {
			if sel, err := metav1.LabelSelectorAsSelector(s.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(labels.Set(p.Labels)) {
				c.queue.Add(s.Namespace + "/" + s.Name)
			}
		}
	}
	controller.AddHandler(c.podInf, cache.ResourceEventHandlerFuncs{
		AddFunc: onPod, DeleteFunc: onPod,
		UpdateFunc: func(old, obj any) {
			if old.(*corev1.Pod).ResourceVersion != obj.(*corev1.Pod).ResourceVersion {
				onPod(obj)
			}
		},
	}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.setInf, c.podInf, c.history.Informer) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}
