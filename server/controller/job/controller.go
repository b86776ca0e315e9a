// Package job is the Job controller: it runs a Job's pods (parallelism,
// completions, NonIndexed or Indexed completion mode), replaces failed
// ones after an exponential back-off until backoffLimit, fails the Job past
// activeDeadlineSeconds, suspends and resumes it, and tracks finished pods
// with the batch.kubernetes.io/job-tracking finalizer so that none is
// counted twice or lost (status.uncountedTerminatedPods), ending with the
// Complete or Failed condition.
package job

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "job-controller"

var jobGVK = batchv1.SchemeGroupVersion.WithKind("Job")

// Options tune the controller.
type Options struct {
	// BackoffBase and BackoffMax: a failed pod is replaced after
	// BackoffBase doubled per consecutive failure, at most BackoffMax.
	BackoffBase, BackoffMax time.Duration
}

// Controller reconciles Jobs.
type Controller struct {
	cc      *controller.Context
	opts    Options
	jobs    batchlisters.JobLister
	jobInf  cache.SharedIndexInformer
	podInf  cache.SharedIndexInformer
	queue   controller.Queue
	orphans controller.Queue // pod keys whose finalizer must go
	exp     *controller.Expectations
	// failedAt remembers when failures of a job (by UID) were last
	// counted: pods' finish times have a 1 s resolution.
	failedAt sync.Map
	// written remembers, per job key, the resourceVersion of the last
	// status this controller wrote: a cached Job older than that would
	// count succeeded pods twice as missing (their finalizers are gone,
	// the counts not yet in the cache) and create extra pods.
	written sync.Map
	// unfinalized holds the UIDs of pods whose tracking finalizer this
	// controller removed while the pod cache may still show it: such a pod
	// was counted already and must not be counted again.
	unfinalized sync.Map
	recorder    record.EventRecorder
	log         *slog.Logger
}

// New returns the Job controller.
func New(cc *controller.Context, opts Options) *Controller {
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = 10 * time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 6 * time.Minute
	}
	inf := cc.Informers.Batch().V1().Jobs()
	c := &Controller{
		cc: cc, opts: opts,
		jobs:     inf.Lister(),
		jobInf:   inf.Informer(),
		podInf:   cc.Informers.Core().V1().Pods().Informer(),
		queue:    controller.NewQueue(component, 0),
		orphans:  controller.NewQueue(component+"-orphan-pods", 0),
		exp:      controller.NewExpectations(),
		recorder: cc.Recorder(component),
		log:      cc.Log(component),
	}
	controller.AddHandler(c.jobInf, cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.enqueue(obj) },
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: func(obj any) {
			if key, ok := controller.KeyOf(obj); ok {
				c.exp.Delete(key)
				c.queue.Add(key)
			}
			// Its pods' finalizers must go.
			if j, ok := controller.Unwrap[*batchv1.Job](obj); ok {
				c.failedAt.Delete(j.UID)
				for _, p := range controller.ByIndex[*corev1.Pod](c.podInf, controller.IndexControllerUID, string(j.UID)) {
					if hasFinalizer(p) {
						c.orphans.Add(p.Namespace + "/" + p.Name)
					}
				}
			}
		},
	}, c.log)
	controller.AddHandler(c.podInf, cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onPod(nil, obj.(*corev1.Pod)) },
		UpdateFunc: func(old, obj any) { c.onPod(old.(*corev1.Pod), obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if p, ok := controller.Unwrap[*corev1.Pod](obj); ok {
				c.onPodDeleted(p)
			}
		},
	}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.jobInf, c.podInf) {
		return
	}
	go controller.RunWorkers(ctx, c.orphans, 1, c.log, c.syncOrphan)
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) enqueue(obj any) {
	if key, ok := controller.KeyOf(obj); ok {
		c.queue.Add(key)
	}
}

// jobOf returns the job controlling pod, if it exists.
func (c *Controller) jobOf(p *corev1.Pod) (*batchv1.Job, bool) {
	ref := metav1.GetControllerOf(p)
	if ref == nil || !isJobRef(ref) {
		return nil, false
	}
	j, err := c.jobs.Jobs(p.Namespace).Get(ref.Name)
	if err != nil || j.UID != ref.UID {
		return nil, false
	}
	return j, true
}

func (c *Controller) onPod(old, p *corev1.Pod) {
	if old != nil && old.ResourceVersion == p.ResourceVersion {
		return
	}
	if !hasFinalizer(p) {
		c.unfinalized.Delete(p.UID)
	}
	j, ok := c.jobOf(p)
	if !ok {
		// Released, orphaned, or its job is gone: the tracking finalizer
		// must go (pods of other controllers keep theirs).
		if ref := metav1.GetControllerOf(p); hasFinalizer(p) && (ref == nil || isJobRef(ref)) {
			c.orphans.Add(p.Namespace + "/" + p.Name)
		}
		if metav1.GetControllerOf(p) == nil && p.DeletionTimestamp == nil {
			c.enqueueMatching(p)
		}
		return
	}
	key := j.Namespace + "/" + j.Name
	switch {
	case old == nil && p.DeletionTimestamp == nil:
		c.exp.CreationObserved(key)
	case p.DeletionTimestamp != nil && (old == nil || old.DeletionTimestamp == nil):
		c.exp.PodDeletionObserved(key, p.Namespace+"/"+p.Name)
	}
	c.queue.Add(key)
}

func (c *Controller) onPodDeleted(p *corev1.Pod) {
	c.unfinalized.Delete(p.UID)
	if j, ok := c.jobOf(p); ok {
		key := j.Namespace + "/" + j.Name
		c.exp.PodDeletionObserved(key, p.Namespace+"/"+p.Name)
		c.queue.Add(key)
	}
}

// enqueueMatching enqueues the jobs whose selector matches an orphan pod.
func (c *Controller) enqueueMatching(p *corev1.Pod) {
	jobs, err := c.jobs.Jobs(p.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, j := range jobs {
		sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(p.Labels)) {
			c.queue.Add(j.Namespace + "/" + j.Name)
		}
	}
}

func isJobRef(ref *metav1.OwnerReference) bool {
	return ref.Kind == jobGVK.Kind && ref.APIVersion == jobGVK.GroupVersion().String()
}

// syncOrphan removes the tracking finalizer of a pod that no job controls
// (released or orphaned) or whose job is gone or finished, as Kubernetes'
// orphan pod cleanup.
func (c *Controller) syncOrphan(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	p, err := c.cc.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !hasFinalizer(p) {
		return nil
	}
	ref := metav1.GetControllerOf(p)
	if ref != nil && !isJobRef(ref) {
		return nil // another controller's pod
	}
	if ref != nil {
		j, err := c.cc.Client.BatchV1().Jobs(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		if err == nil && j.UID == ref.UID && j.DeletionTimestamp == nil {
			if !isFinished(j) {
				return nil // the job's sync counts it
			}
		} else if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return c.removeFinalizer(ctx, p)
}

func hasFinalizer(p *corev1.Pod) bool {
	return slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer)
}

// removeFinalizer removes the job-tracking finalizer (the pod's UID is a
// precondition).
func (c *Controller) removeFinalizer(ctx context.Context, p *corev1.Pod) error {
	patch := []byte(`{"metadata":{"$deleteFromPrimitiveList/finalizers":["` + batchv1.JobTrackingFinalizer + `"],"uid":"` + string(p.UID) + `"}}`)
	out, err := c.cc.Client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err == nil && !hasFinalizer(out) {
		// Unless the cache has caught up already (its event came first).
		if cached, ok, _ := c.podInf.GetStore().GetByKey(p.Namespace + "/" + p.Name); !ok || hasFinalizer(cached.(*corev1.Pod)) {
			c.unfinalized.Store(p.UID, struct{}{})
		}
	}
	return err
}

// finalizerRemoved reports whether this controller removed p's tracking
// finalizer already though the cached p still shows it.
func (c *Controller) finalizerRemoved(p *corev1.Pod) bool {
	_, ok := c.unfinalized.Load(p.UID)
	return ok
}
