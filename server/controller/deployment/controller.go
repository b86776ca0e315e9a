// Package deployment is the Deployment controller: it rolls a
// Deployment's pod template out through ReplicaSets (one per template,
// named by the template's hash), RollingUpdate within maxSurge and
// maxUnavailable or Recreate, keeps revision annotations and a bounded
// history of old ReplicaSets (so `kubectl rollout history|undo` work),
// scales proportionally, honours spec.paused, and reports status with the
// Available and Progressing conditions (progressDeadlineSeconds) that
// `kubectl rollout status` and `kubectl wait` read.
package deployment

import (
	"context"
	"log/slog"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "deployment-controller"

var (
	deploymentGVK = appsv1.SchemeGroupVersion.WithKind("Deployment")
	replicaSetGVK = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")
)

// Controller reconciles Deployments.
type Controller struct {
	cc       *controller.Context
	dLister  appslisters.DeploymentLister
	rsLister appslisters.ReplicaSetLister
	dInf     cache.SharedIndexInformer
	rsInf    cache.SharedIndexInformer
	podInf   cache.SharedIndexInformer
	queue    controller.Queue
	recorder record.EventRecorder
	log      *slog.Logger
}

// New returns the Deployment controller.
func New(cc *controller.Context) *Controller {
	d := cc.Informers.Apps().V1().Deployments()
	rs := cc.Informers.Apps().V1().ReplicaSets()
	c := &Controller{
		cc:       cc,
		dLister:  d.Lister(),
		rsLister: rs.Lister(),
		dInf:     d.Informer(),
		rsInf:    rs.Informer(),
		podInf:   cc.Informers.Core().V1().Pods().Informer(),
		queue:    controller.NewQueue(component, 0),
		recorder: cc.Recorder(component),
		log:      cc.Log(component),
	}
	controller.AddHandler(c.dInf, controller.Handler(c.queue), c.log)
	controller.AddHandler(c.rsInf, cache.ResourceEventHandlerFuncs{
		AddFunc:    c.onReplicaSet,
		UpdateFunc: func(old, obj any) { c.onReplicaSetUpdate(old, obj) },
		DeleteFunc: c.onReplicaSet,
	}, c.log)
	controller.AddHandler(c.podInf, cache.ResourceEventHandlerFuncs{DeleteFunc: c.onPodDelete}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.dInf, c.rsInf, c.podInf) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

// ownerOf returns the key of the deployment controlling rs.
func (c *Controller) ownerOf(rs *appsv1.ReplicaSet) (string, bool) {
	ref := metav1.GetControllerOf(rs)
	if ref == nil || ref.Kind != deploymentGVK.Kind {
		return "", false
	}
	d, err := c.dLister.Deployments(rs.Namespace).Get(ref.Name)
	if err != nil || d.UID != ref.UID {
		return "", false
	}
	return rs.Namespace + "/" + d.Name, true
}

// enqueueMatching enqueues the deployments whose selector matches an
// orphan replica set (they may adopt it).
func (c *Controller) enqueueMatching(rs *appsv1.ReplicaSet) {
	ds, err := c.dLister.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, d := range ds {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(rs.Labels)) {
			c.queue.Add(d.Namespace + "/" + d.Name)
		}
	}
}

func (c *Controller) onReplicaSet(obj any) {
	rs, ok := controller.Unwrap[*appsv1.ReplicaSet](obj)
	if !ok {
		return
	}
	if key, ok := c.ownerOf(rs); ok {
		c.queue.Add(key)
		return
	}
	if metav1.GetControllerOf(rs) == nil && rs.DeletionTimestamp == nil {
		c.enqueueMatching(rs)
	}
}

func (c *Controller) onReplicaSetUpdate(oldObj, obj any) {
	old, rs := oldObj.(*appsv1.ReplicaSet), obj.(*appsv1.ReplicaSet)
	if old.ResourceVersion == rs.ResourceVersion {
		return
	}
	if oldRef, ref := metav1.GetControllerOf(old), metav1.GetControllerOf(rs); oldRef != nil && (ref == nil || ref.UID != oldRef.UID) {
		if key, ok := c.ownerOf(old); ok {
			c.queue.Add(key)
		}
	}
	c.onReplicaSet(rs)
}

// onPodDelete wakes a Recreate deployment waiting for its old pods to go.
func (c *Controller) onPodDelete(obj any) {
	pod, ok := controller.Unwrap[*corev1.Pod](obj)
	if !ok {
		return
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != replicaSetGVK.Kind {
		return
	}
	rs, err := c.rsLister.ReplicaSets(pod.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return
	}
	if key, ok := c.ownerOf(rs); ok {
		if d, err := c.dLister.Deployments(rs.Namespace).Get(metav1.GetControllerOf(rs).Name); err == nil &&
			d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
			c.queue.Add(key)
		}
	}
}
