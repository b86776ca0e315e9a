package nodelifecycle

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/server/controller"
)

// evictor deletes pods from nodes with NoExecute taints they do not
// tolerate (Kubernetes' taint eviction controller): untolerated at once,
// tolerated for tolerationSeconds after the taint was added.
type evictor struct {
	cc       *controller.Context
	pods     corelisters.PodLister
	nodes    corelisters.NodeLister
	podInf   cache.SharedIndexInformer
	queue    controller.Queue
	recorder record.EventRecorder
	log      *slog.Logger
}

func newEvictor(cc *controller.Context, log *slog.Logger) *evictor {
	e := &evictor{
		cc: cc, pods: cc.Informers.Core().V1().Pods().Lister(), nodes: cc.Informers.Core().V1().Nodes().Lister(),
		podInf: cc.Informers.Core().V1().Pods().Informer(),
		queue:  controller.NewQueue("taint-eviction-controller", 0), recorder: cc.Recorder("taint-eviction-controller"), log: log,
	}
	controller.AddHandler(cc.Informers.Core().V1().Nodes().Informer(), cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { e.onNode(nil, obj.(*corev1.Node)) },
		UpdateFunc: func(old, obj any) {
			e.onNode(old.(*corev1.Node), obj.(*corev1.Node))
		},
	}, log)
	onPod := func(obj any) {
		p := obj.(*corev1.Pod)
		if p.Spec.NodeName == "" || p.DeletionTimestamp != nil {
			return
		}
		if n, err := e.nodes.Get(p.Spec.NodeName); err == nil && len(noExecuteTaints(n)) > 0 {
			if key, ok := controller.KeyOf(p); ok {
				e.queue.Add(key)
			}
		}
	}
	controller.AddHandler(e.podInf, cache.ResourceEventHandlerFuncs{AddFunc: onPod, UpdateFunc: func(_, obj any) { onPod(obj) }}, log)
	return e
}

func (e *evictor) onNode(old, n *corev1.Node) {
	taints := noExecuteTaints(n)
	if len(taints) == 0 {
		return
	}
	if old != nil && equalTaints(noExecuteTaints(old), taints) {
		return
	}
	for _, p := range controller.ByIndex[*corev1.Pod](e.podInf, controller.IndexNodeName, n.Name) {
		e.queue.Add(p.Namespace + "/" + p.Name)
	}
}

func (e *evictor) run(ctx context.Context, workers int) {
	controller.RunWorkers(ctx, e.queue, workers, e.log, e.sync)
}

func (e *evictor) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	p, err := e.pods.Pods(ns).Get(name)
	if err != nil || p.DeletionTimestamp != nil || p.Spec.NodeName == "" || controller.IsPodTerminal(p) {
		return nil
	}
	n, err := e.nodes.Get(p.Spec.NodeName)
	if err != nil {
		return nil
	}
	taints := noExecuteTaints(n)
	if len(taints) == 0 {
		return nil
	}
	wait, forever := tolerationWait(p.Spec.Tolerations, taints)
	if forever {
		return nil
	}
	// Count from when the latest taint was added.
	var added time.Time
	for _, t := range taints {
		if t.TimeAdded != nil && t.TimeAdded.After(added) {
			added = t.TimeAdded.Time
		}
	}
	if added.IsZero() {
		added = e.cc.Now()
	}
	if left := added.Add(wait).Sub(e.cc.Now()); left > 0 {
		e.queue.AddAfter(key, left)
		return nil
	}
	return e.evict(ctx, p)
}

// tolerationWait is how long the pod tolerates the taints: 0 when one is
// not tolerated; the shortest tolerationSeconds of the tolerations used;
// forever when none of those has tolerationSeconds.
func tolerationWait(tols []corev1.Toleration, taints []corev1.Taint) (time.Duration, bool) {
	var wait time.Duration
	bounded := false
	for i := range taints {
		tolerated := false
		for _, tol := range tols {
			if !controller.ToleratesTaint(&tol, &taints[i]) {
				continue
			}
			tolerated = true
			if tol.TolerationSeconds != nil {
				d := time.Duration(max(*tol.TolerationSeconds, 0)) * time.Second
				if !bounded || d < wait {
					wait, bounded = d, true
				}
			}
		}
		if !tolerated {
			return 0, false
		}
	}
	return wait, !bounded
}

// evict marks the pod with the DisruptionTarget condition and deletes it.
func (e *evictor) evict(ctx context.Context, p *corev1.Pod) error {
	cp := p.DeepCopy()
	if controller.SetPodCondition(&cp.Status, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
		Reason: "DeletionByTaintManager", Message: "Taint manager: deleting due to NoExecute taint",
		LastTransitionTime: controller.Now(e.cc.Now)}) {
		if _, err := e.cc.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			e.log.Debug("disruption condition", "pod", p.Namespace+"/"+p.Name, "err", err)
		}
	}
	e.recorder.Eventf(p, corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s/%s", p.Namespace, p.Name)
	err := e.cc.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err == nil {
		e.log.Info("evicted pod from tainted node", "pod", p.Namespace+"/"+p.Name, "node", p.Spec.NodeName)
	}
	return err
}

// markPodsNotReady sets the Ready condition of the node's pods to False.
func (e *evictor) markPodsNotReady(ctx context.Context, node string) {
	for _, p := range controller.ByIndex[*corev1.Pod](e.podInf, controller.IndexNodeName, node) {
		if controller.IsPodTerminal(p) || !controller.IsPodReady(p) {
			continue
		}
		cp := p.DeepCopy()
		controller.SetPodCondition(&cp.Status, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse,
			Reason: "NodeNotReady", LastTransitionTime: controller.Now(e.cc.Now)})
		if _, err := e.cc.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			e.log.Debug("mark pod not ready", "pod", p.Namespace+"/"+p.Name, "err", err)
		}
	}
}

func noExecuteTaints(n *corev1.Node) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, t)
		}
	}
	return out
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
