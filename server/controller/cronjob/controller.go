// Package cronjob is the CronJob controller: it creates a Job from the
// CronJob's template at each scheduled time (in spec.timeZone), honouring
// suspend, startingDeadlineSeconds and concurrencyPolicy (Allow, Forbid,
// Replace), keeps status.active, lastScheduleTime and lastSuccessfulTime,
// and deletes finished Jobs beyond the history limits.
package cronjob

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "cronjob-controller"

var cronJobGVK = batchv1.SchemeGroupVersion.WithKind("CronJob")

// Controller reconciles CronJobs.
type Controller struct {
	cc       *controller.Context
	cjs      batchlisters.CronJobLister
	cjInf    cache.SharedIndexInformer
	jobInf   cache.SharedIndexInformer
	queue    controller.Queue
	recorder record.EventRecorder
	log      *slog.Logger
}

// New returns the CronJob controller.
func New(cc *controller.Context) *Controller {
	inf := cc.Informers.Batch().V1().CronJobs()
	c := &Controller{
		cc: cc, cjs: inf.Lister(), cjInf: inf.Informer(),
		jobInf:   cc.Informers.Batch().V1().Jobs().Informer(),
		queue:    controller.NewQueue(component, 0),
		recorder: cc.Recorder(component),
		log:      cc.Log(component),
	}
	controller.AddHandler(c.cjInf, controller.Handler(c.queue), c.log)
	onJob := func(obj any) {
		j, ok := controller.Unwrap[*batchv1.Job](obj)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOf(j); ref != nil && ref.Kind == cronJobGVK.Kind {
			c.queue.Add(j.Namespace + "/" + ref.Name)
		}
	}
	controller.AddHandler(c.jobInf, cache.ResourceEventHandlerFuncs{
		AddFunc: onJob, UpdateFunc: func(_, obj any) { onJob(obj) }, DeleteFunc: onJob,
	}, c.log)
	return c
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.cjInf, c.jobInf) {
		return
	}
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := c.cjs.CronJobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	cj := cached.DeepCopy()
	var jobs []*batchv1.Job
	for _, j := range controller.ByIndex[*batchv1.Job](c.jobInf, controller.IndexControllerUID, string(cj.UID)) {
		jobs = append(jobs, j)
	}
	if err := c.syncActive(ctx, cj, jobs); err != nil {
		return err
	}
	if !apiequality.Semantic.DeepEqual(cj.Status, cached.Status) {
		out, err := c.cc.Client.BatchV1().CronJobs(ns).UpdateStatus(ctx, cj, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		cj = out
	}
	if cj.DeletionTimestamp != nil {
		return nil
	}
	if err := c.cleanupHistory(ctx, cj, jobs); err != nil {
		return err
	}
	if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
		return nil
	}
	sched, loc, err := schedule(cj)
	if err != nil {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "InvalidSchedule", "invalid schedule: %v", err)
		return nil
	}
	now := c.cc.Now().In(loc)
	last, missed, next := mostRecent(cj, sched, now)
	requeue := func() {
		if !next.IsZero() {
			c.queue.AddAfter(key, next.Sub(now)+100*time.Millisecond)
		}
	}
	if last == nil {
		requeue()
		return nil
	}
	if missed > maxMissed {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "TooManyMissedTimes",
			"too many missed start times: %d. Set or decrease .spec.startingDeadlineSeconds or check clock skew", missed)
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil && last.Add(time.Duration(*d)*time.Second).Before(now) {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "MissSchedule", "Missed scheduled time to start a job: %s", last.UTC().Format(time.RFC1123Z))
		requeue()
		return nil
	}
	jobName := fmt.Sprintf("%s-%d", cj.Name, last.Unix()/60)
	for _, j := range jobs {
		if j.Name == jobName {
			// Started already (an earlier sync's status write may have
			// been lost): record it.
			if cj.Status.LastScheduleTime == nil || cj.Status.LastScheduleTime.Time.Before(*last) {
				if err := c.recordStart(ctx, cj, j, *last); err != nil {
					return err
				}
			}
			requeue()
			return nil
		}
	}
	switch cj.Spec.ConcurrencyPolicy {
	case batchv1.ForbidConcurrent:
		if len(cj.Status.Active) > 0 {
			c.recorder.Event(cj, corev1.EventTypeNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
			requeue()
			return nil
		}
	case batchv1.ReplaceConcurrent:
		for _, ref := range cj.Status.Active {
			policy := metav1.DeletePropagationBackground
			err := c.cc.Client.BatchV1().Jobs(ns).Delete(ctx, ref.Name, metav1.DeleteOptions{PropagationPolicy: &policy,
				Preconditions: &metav1.Preconditions{UID: &ref.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				c.recorder.Eventf(cj, corev1.EventTypeWarning, "FailedDelete", "Deleted job: %v", err)
				return err
			}
			c.recorder.Eventf(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %v", ref.Name)
		}
		cj.Status.Active = nil
	}
	job := jobFromTemplate(cj, jobName, *last)
	created, err := c.cc.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		// Created by an earlier sync whose status write was lost.
		if created, err = c.cc.Client.BatchV1().Jobs(ns).Get(ctx, jobName, metav1.GetOptions{}); err != nil {
			return err
		}
	case err != nil:
		if controller.IsNamespaceTerminating(err) {
			return nil
		}
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "FailedCreate", "Error creating job: %v", err)
		return err
	default:
		c.recorder.Eventf(cj, corev1.EventTypeNormal, "SuccessfulCreate", "Created job %v", created.Name)
	}
	if err := c.recordStart(ctx, cj, created, *last); err != nil {
		return err
	}
	requeue()
	return nil
}

// recordStart puts a started job in status.active and its time in
// lastScheduleTime, retrying on a fresh read after a conflict.
func (c *Controller) recordStart(ctx context.Context, cj *batchv1.CronJob, j *batchv1.Job, at time.Time) error {
	for attempt := 0; ; attempt++ {
		if !inActive(cj, j.UID) {
			cj.Status.Active = append(cj.Status.Active, jobRef(j))
		}
		t := metav1.NewTime(at.UTC())
		cj.Status.LastScheduleTime = &t
		_, err := c.cc.Client.BatchV1().CronJobs(cj.Namespace).UpdateStatus(ctx, cj, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) || attempt == 3 {
			return err
		}
		if cj, err = c.cc.Client.BatchV1().CronJobs(cj.Namespace).Get(ctx, cj.Name, metav1.GetOptions{}); err != nil {
			return err
		}
	}
}

// syncActive brings status.active and lastSuccessfulTime in line with the
// cronjob's jobs.
func (c *Controller) syncActive(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) error {
	children := map[string]bool{}
	for _, j := range jobs {
		children[string(j.UID)] = true
		found := inActive(cj, j.UID)
		finished, cond := finishedStatus(j)
		switch {
		case !found && !finished && j.DeletionTimestamp == nil:
			// Created by us before a crash lost the status write: track it.
			cj.Status.Active = append(cj.Status.Active, jobRef(j))
		case found && finished:
			removeActive(cj, j.UID)
			c.recorder.Eventf(cj, corev1.EventTypeNormal, "SawCompletedJob", "Saw completed job: %s, condition: %v", j.Name, cond)
		}
		if cond == batchv1.JobComplete && j.Status.CompletionTime != nil {
			if cj.Status.LastSuccessfulTime == nil || j.Status.CompletionTime.After(cj.Status.LastSuccessfulTime.Time) {
				t := *j.Status.CompletionTime
				cj.Status.LastSuccessfulTime = &t
			}
		}
	}
	for _, ref := range append([]corev1.ObjectReference(nil), cj.Status.Active...) {
		if children[string(ref.UID)] {
			continue
		}
		_, err := c.cc.Client.BatchV1().Jobs(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			removeActive(cj, ref.UID)
			c.recorder.Eventf(cj, corev1.EventTypeNormal, "MissingJob", "Active job went missing: %v", ref.Name)
		case err != nil:
			return err
		}
	}
	return nil
}

// cleanupHistory deletes the oldest finished jobs beyond the successful
// and failed history limits.
func (c *Controller) cleanupHistory(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) error {
	var ok, failed []*batchv1.Job
	for _, j := range jobs {
		if j.DeletionTimestamp != nil {
			continue
		}
		switch _, cond := finishedStatus(j); cond {
		case batchv1.JobComplete:
			ok = append(ok, j)
		case batchv1.JobFailed:
			failed = append(failed, j)
		}
	}
	for _, set := range []struct {
		jobs  []*batchv1.Job
		limit *int32
	}{{ok, cj.Spec.SuccessfulJobsHistoryLimit}, {failed, cj.Spec.FailedJobsHistoryLimit}} {
		if set.limit == nil || len(set.jobs) <= int(*set.limit) {
			continue
		}
		sort.Slice(set.jobs, func(i, k int) bool { return startTime(set.jobs[i]).Before(startTime(set.jobs[k])) })
		for _, j := range set.jobs[:len(set.jobs)-int(*set.limit)] {
			policy := metav1.DeletePropagationBackground
			err := c.cc.Client.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &policy,
				Preconditions: &metav1.Preconditions{UID: &j.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			c.recorder.Eventf(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %v", j.Name)
		}
	}
	return nil
}

func startTime(j *batchv1.Job) time.Time {
	if j.Status.StartTime != nil {
		return j.Status.StartTime.Time
	}
	return j.CreationTimestamp.Time
}

// jobFromTemplate builds the job of one scheduled time.
func jobFromTemplate(cj *batchv1.CronJob, name string, at time.Time) *batchv1.Job {
	t := cj.Spec.JobTemplate.DeepCopy()
	ann := t.Annotations
	if ann == nil {
		ann = map[string]string{}
	}
	ann[batchv1.CronJobScheduledTimestampAnnotation] = at.Format(time.RFC3339)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: cj.Namespace, Labels: t.Labels, Annotations: ann,
			OwnerReferences: []metav1.OwnerReference{controller.OwnerRef(cj, cronJobGVK)},
		},
		Spec: t.Spec,
	}
}

func jobRef(j *batchv1.Job) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Namespace: j.Namespace, Name: j.Name,
		UID: j.UID, ResourceVersion: j.ResourceVersion}
}

func inActive(cj *batchv1.CronJob, uid types.UID) bool {
	for _, r := range cj.Status.Active {
		if r.UID == uid {
			return true
		}
	}
	return false
}

func removeActive(cj *batchv1.CronJob, uid types.UID) {
	var out []corev1.ObjectReference
	for _, r := range cj.Status.Active {
		if r.UID != uid {
			out = append(out, r)
		}
	}
	cj.Status.Active = out
}

// finishedStatus reports whether j finished, and how.
func finishedStatus(j *batchv1.Job) (bool, batchv1.JobConditionType) {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true, c.Type
		}
	}
	return false, ""
}
