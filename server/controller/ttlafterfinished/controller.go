// Package ttlafterfinished deletes finished Jobs once their
// ttlSecondsAfterFinished has passed (with foreground propagation, so
// their pods go first), as Kubernetes' TTL-after-finished controller.
package ttlafterfinished

import (
	"context"
	"log/slog"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "ttl-after-finished-controller"

// Controller deletes expired finished Jobs.
type Controller struct {
	cc    *controller.Context
	jobs  batchlisters.JobLister
	inf   cache.SharedIndexInformer
	queue controller.Queue
	log   *slog.Logger
}

// New returns the controller.
func New(cc *controller.Context) *Controller {
	inf := cc.Informers.Batch().V1().Jobs()
	c := &Controller{cc: cc, jobs: inf.Lister(), inf: inf.Informer(), queue: controller.NewQueue(component, 0), log: cc.Log(component)}
	add := func(obj any) {
		if j, ok := obj.(*batchv1.Job); ok && j.Spec.TTLSecondsAfterFinished != nil && j.DeletionTimestamp == nil && finishedAt(j) != nil {
			if key, ok := controller.KeyOf(j); ok {
				c.queue.Add(key)
			}
		}
	}
	controller.AddHandler(c.inf, cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, obj any) { add(obj) }}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.inf) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	j, err := c.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	left, expired := c.expiry(j)
	if !expired {
		if left > 0 {
			c.queue.AddAfter(key, left)
		}
		return nil
	}
	// Check the live object: the TTL may have been changed meanwhile.
	fresh, err := c.cc.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if left, expired := c.expiry(fresh); !expired {
		if left > 0 {
			c.queue.AddAfter(key, left)
		}
		return nil
	}
	policy := metav1.DeletePropagationForeground
	err = c.cc.Client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{
		PropagationPolicy: &policy,
		Preconditions:     &metav1.Preconditions{UID: &fresh.UID, ResourceVersion: &fresh.ResourceVersion},
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		c.log.Info("deleted finished job past its TTL", "job", key)
	}
	return err
}

// expiry reports whether j's TTL has passed, or how long is left.
func (c *Controller) expiry(j *batchv1.Job) (time.Duration, bool) {
	at := finishedAt(j)
	if j.Spec.TTLSecondsAfterFinished == nil || j.DeletionTimestamp != nil || at == nil {
		return 0, false
	}
	left := at.Add(time.Duration(*j.Spec.TTLSecondsAfterFinished) * time.Second).Sub(c.cc.Now())
	return left, left <= 0
}

// finishedAt is when the job got its Complete or Failed condition.
func finishedAt(j *batchv1.Job) *time.Time {
	for _, cond := range j.Status.Conditions {
		if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
			t := cond.LastTransitionTime.Time
			if j.Status.CompletionTime != nil && cond.Type == batchv1.JobComplete {
				t = j.Status.CompletionTime.Time
			}
			return &t
		}
	}
	return nil
}
