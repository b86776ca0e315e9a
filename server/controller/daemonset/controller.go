// Package daemonset is the DaemonSet controller: one pod on every node the
// pod template fits (nodeSelector, required node affinity, taints it
// tolerates — daemon pods get Kubernetes' default daemon tolerations), a
// pod bound straight to its node (spec.nodeName), failed pods replaced,
// pods removed from nodes that no longer fit, and RollingUpdate
// (maxUnavailable, maxSurge) or OnDelete updates tracked by
// ControllerRevisions (so `kubectl rollout history|undo|status` work).
package daemonset

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

const component = "daemonset-controller"

var dsGVK = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

// Controller reconciles DaemonSets.
type Controller struct {
	cc       *controller.Context
	dss      appslisters.DaemonSetLister
	nodes    corelisters.NodeLister
	pods     corelisters.PodLister
	dsInf    cache.SharedIndexInformer
	podInf   cache.SharedIndexInformer
	nodeInf  cache.SharedIndexInformer
	history  *controller.History
	queue    controller.Queue
	exp      *controller.Expectations
	recorder record.EventRecorder
	log      *slog.Logger
}

// New returns the controller.
func New(cc *controller.Context) *Controller {
	f := cc.Informers
	c := &Controller{
		cc:  cc,
		dss: f.Apps().V1().DaemonSets().Lister(), nodes: f.Core().V1().Nodes().Lister(), pods: f.Core().V1().Pods().Lister(),
		dsInf: f.Apps().V1().DaemonSets().Informer(), podInf: f.Core().V1().Pods().Informer(), nodeInf: f.Core().V1().Nodes().Informer(),
		history:  &controller.History{Client: cc.Client, Informer: f.Apps().V1().ControllerRevisions().Informer()},
		queue:    controller.NewQueue(component, 0),
		exp:      controller.NewExpectations(),
		recorder: cc.Recorder(component),
		log:      cc.Log(component),
	}
	controller.AddHandler(c.dsInf, cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue, UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: func(obj any) {
			if key, ok := controller.KeyOf(obj); ok {
				c.exp.Delete(key)
			}
		},
	}, c.log)
	controller.AddHandler(c.podInf, cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if key, ok := c.ownerKey(obj.(*corev1.Pod)); ok {
				c.exp.CreationObserved(key)
				c.queue.Add(key)
			}
		},
		UpdateFunc: func(old, obj any) {
			p := obj.(*corev1.Pod)
			if old.(*corev1.Pod).ResourceVersion == p.ResourceVersion {
				return
			}
			if key, ok := c.ownerKey(p); ok {
				if p.DeletionTimestamp != nil {
					c.exp.PodDeletionObserved(key, p.Namespace+"/"+p.Name)
				}
				c.queue.Add(key)
			}
		},
		DeleteFunc: func(obj any) {
			p, ok := controller.Unwrap[*corev1.Pod](obj)
			if !ok {
				return
			}
			if key, ok := c.ownerKey(p); ok {
				c.exp.PodDeletionObserved(key, p.Namespace+"/"+p.Name)
				c.queue.Add(key)
			}
		},
	}, c.log)
	all := func(any) {
		dss, _ := c.dss.List(labels.Everything())
		for _, ds := range dss {
			c.queue.Add(ds.Namespace + "/" + ds.Name)
		}
	}
	controller.AddHandler(c.nodeInf, cache.ResourceEventHandlerFuncs{
		AddFunc: all, DeleteFunc: all,
		UpdateFunc: func(old, obj any) {
			o, n := old.(*corev1.Node), obj.(*corev1.Node)
			if !labels.Equals(o.Labels, n.Labels) || !equalTaints(o.Spec.Taints, n.Spec.Taints) || o.Spec.Unschedulable != n.Spec.Unschedulable {
				all(obj)
			}
		},
	}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.dsInf, c.podInf, c.nodeInf, c.history.Informer) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) enqueue(obj any) {
	if key, ok := controller.KeyOf(obj); ok {
		c.queue.Add(key)
	}
}

func (c *Controller) ownerKey(p *corev1.Pod) (string, bool) {
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != dsGVK.Kind {
		return "", false
	}
	ds, err := c.dss.DaemonSets(p.Namespace).Get(ref.Name)
	if err != nil || ds.UID != ref.UID {
		return "", false
	}
	return ds.Namespace + "/" + ds.Name, true
}

func equalTaints(a, b []corev1.Taint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].MatchTaint(&b[i]) {
			return false
		}
	}
	return true
}
