// Package podgc deletes pods nobody else will: the oldest finished pods
// beyond the terminated-pod threshold, pods bound to nodes that no longer
// exist (after a 40 s quarantine), and pods being deleted that were never
// scheduled. It runs every 20 s, as Kubernetes' pod garbage collector.
package podgc

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "pod-garbage-collector"

// Options tune the collector.
type Options struct {
	// TerminatedThreshold: finished pods beyond this many are deleted,
	// oldest first; negative keeps them all.
	TerminatedThreshold int
	// Period between passes (20s if 0); Quarantine a missing node must
	// stay missing before its pods go (40s if 0).
	Period, Quarantine time.Duration
}

// Controller collects pods.
type Controller struct {
	cc      *controller.Context
	opts    Options
	pods    corelisters.PodLister
	nodes   corelisters.NodeLister
	podInf  cache.SharedIndexInformer
	nodeInf cache.SharedIndexInformer
	log     *slog.Logger
	missing map[string]time.Time // node → first seen missing
}

// New returns the pod garbage collector.
func New(cc *controller.Context, opts Options) *Controller {
	if opts.Period <= 0 {
		opts.Period = 20 * time.Second
	}
	if opts.Quarantine <= 0 {
		opts.Quarantine = 40 * time.Second
	}
	return &Controller{
		cc: cc, opts: opts,
		pods: cc.Informers.Core().V1().Pods().Lister(), nodes: cc.Informers.Core().V1().Nodes().Lister(),
		podInf: cc.Informers.Core().V1().Pods().Informer(), nodeInf: cc.Informers.Core().V1().Nodes().Informer(),
		log: cc.Log(component), missing: map[string]time.Time{},
	}
}

// Run collects every period until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	if !controller.WaitForSync(ctx, c.podInf, c.nodeInf) {
		return
	}
	t := time.NewTicker(c.opts.Period)
	defer t.Stop()
	for {
		c.Collect(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Collect runs one pass.
func (c *Controller) Collect(ctx context.Context) {
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		return
	}
	c.gcTerminated(ctx, pods)
	c.gcOrphaned(ctx, pods)
	c.gcUnscheduledTerminating(ctx, pods)
}

func (c *Controller) gcTerminated(ctx context.Context, pods []*corev1.Pod) {
	if c.opts.TerminatedThreshold < 0 {
		return
	}
	var done []*corev1.Pod
	for _, p := range pods {
		if controller.IsPodTerminal(p) && p.DeletionTimestamp == nil {
			done = append(done, p)
		}
	}
	n := len(done) - c.opts.TerminatedThreshold
	if n <= 0 {
		return
	}
	sort.Slice(done, func(i, j int) bool { return done[i].CreationTimestamp.Before(&done[j].CreationTimestamp) })
	c.log.Info("deleting terminated pods over the threshold", "count", n, "threshold", c.opts.TerminatedThreshold)
	for _, p := range done[:n] {
		c.forceDelete(ctx, p)
	}
}

// gcOrphaned deletes the pods of nodes gone for the quarantine.
func (c *Controller) gcOrphaned(ctx context.Context, pods []*corev1.Pod) {
	now := c.cc.Now()
	seen := map[string]bool{}
	for _, p := range pods {
		node := p.Spec.NodeName
		if node == "" || seen[node] {
			continue
		}
		seen[node] = true
		if _, err := c.nodes.Get(node); err == nil {
			delete(c.missing, node)
			continue
		}
		if _, ok := c.missing[node]; !ok {
			c.missing[node] = now
		}
	}
	for node, since := range c.missing {
		if !seen[node] {
			delete(c.missing, node)
			continue
		}
		if now.Sub(since) < c.opts.Quarantine {
			continue
		}
		// Confirm with a live read: the cache may lag.
		if _, err := c.cc.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			if err == nil {
				delete(c.missing, node)
			}
			continue
		}
		for _, p := range pods {
			if p.Spec.NodeName == node {
				c.log.Info("deleting pod of a node that no longer exists", "pod", p.Namespace+"/"+p.Name, "node", node)
				c.markFailed(ctx, p, &corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
					Reason: "DeletionByPodGC", Message: "PodGC: node no longer exists"})
				c.forceDelete(ctx, p)
			}
		}
	}
}

func (c *Controller) gcUnscheduledTerminating(ctx context.Context, pods []*corev1.Pod) {
	for _, p := range pods {
		if p.DeletionTimestamp != nil && p.Spec.NodeName == "" {
			c.markFailed(ctx, p, nil)
			c.forceDelete(ctx, p)
		}
	}
}

// markFailed puts a pod that no kubelet will finish into the Failed phase
// (with cond, if any) before it is deleted, as Kubernetes' pod GC: a pod
// held by a finalizer (a Job's) must not stay Running forever, and a Job's
// pod failure policy can match the condition.
func (c *Controller) markFailed(ctx context.Context, p *corev1.Pod, cond *corev1.PodCondition) {
	if controller.IsPodTerminal(p) {
		return
	}
	st := map[string]any{"phase": corev1.PodFailed}
	if cond != nil {
		cp := *cond
		cp.LastTransitionTime = controller.Now(c.cc.Now)
		st["conditions"] = []corev1.PodCondition{cp}
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": p.UID}, "status": st})
	if err != nil {
		c.log.Warn("pod gc: mark failed", "pod", p.Namespace+"/"+p.Name, "err", err)
		return
	}
	_, err = c.cc.Client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		c.log.Warn("pod gc: mark failed", "pod", p.Namespace+"/"+p.Name, "err", err)
	}
}

func (c *Controller) forceDelete(ctx context.Context, p *corev1.Pod) {
	zero := int64(0)
	err := c.cc.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		c.log.Warn("pod gc: delete", "pod", p.Namespace+"/"+p.Name, "err", err)
	}
}
