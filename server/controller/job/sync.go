package job

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/controller"
)

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := c.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.Delete(key)
		c.written.Delete(key)
		return nil
	}
	if err != nil {
		return err
	}
	if w, ok := c.written.Load(key); ok && rvOlder(cached.ResourceVersion, w.(string)) {
		// Our own last status write is not in the cache yet: wait for it.
		c.queue.AddAfter(key, 50*time.Millisecond)
		return nil
	}
	j := cached.DeepCopy()
	satisfied := c.exp.Satisfied(key)
	pods, err := c.claimPods(ctx, j)
	if err != nil {
		return err
	}
	now := c.cc.Now()
	mt := controller.Now(c.cc.Now)
	// The interim condition decided in an earlier sync, or a failure a
	// FailJob rule of the pod failure policy calls for now (recorded before
	// any finalizer goes, so that its message is not lost).
	var target *batchv1.JobCondition
	var failedIdx map[int]bool
	if !isFinished(j) {
		target = interimCondition(j)
		if target == nil {
			if msg := failJobMessage(j, pods); msg != "" {
				target = newCondition(batchv1.JobFailureTarget, batchv1.JobReasonPodFailurePolicy, msg, mt)
			}
		}
		if hasBackoffLimitPerIndex(j) {
			failedIdx = failedIndexes(j, pods)
		}
	}
	if j, err = c.trackFinishedPods(ctx, j, pods, target, failedIdx); err != nil {
		return err
	}
	var active, terminating []*corev1.Pod
	for _, p := range pods {
		switch {
		case controller.IsPodTerminal(p):
		case p.DeletionTimestamp != nil:
			terminating = append(terminating, p)
		default:
			active = append(active, p)
		}
	}
	st := j.Status.DeepCopy()
	var manageErr error
	if !isFinished(j) {
		suspended := j.Spec.Suspend != nil && *j.Spec.Suspend
		c.syncSuspended(j, st, suspended, mt)
		if st.StartTime == nil && !suspended {
			st.StartTime = &mt
		}
		if hasBackoffLimitPerIndex(j) {
			st.FailedIndexes = ptr(formatIndexes(failedIdx))
		}
		if target == nil {
			target = c.finishCondition(j, st, active, failedIdx, now, mt)
		}
		if target == nil && satisfied {
			active, manageErr = c.manage(ctx, key, j, st, pods, active, terminating, failedIdx, suspended, now)
		}
		if target == nil && complete(j, st, active) {
			target = newCondition(batchv1.JobSuccessCriteriaMet, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods", mt)
		}
		if target != nil {
			// Stop what still runs; the job is Failed or Complete once no
			// pod is left terminating or uncounted.
			if err := c.deletePods(ctx, key, j, active); err != nil {
				manageErr = err
			}
			terminating = append(terminating, active...)
			active = nil
			if cur := condition(st, target.Type); cur == nil || cur.Status != corev1.ConditionTrue {
				setCondition(st, target.Type, corev1.ConditionTrue, target.Reason, target.Message, mt)
			}
			c.finish(j, st, pods, terminating, target, mt)
		}
	}
	st.Active = int32(len(active))
	st.Terminating = ptr(int32(len(terminating)))
	var ready int32
	for _, p := range active {
		if controller.IsPodReady(p) {
			ready++
		}
	}
	st.Ready = &ready
	if !apiequality.Semantic.DeepEqual(*st, j.Status) {
		j.Status = *st
		out, err := c.cc.Client.BatchV1().Jobs(ns).UpdateStatus(ctx, j, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		c.written.Store(key, out.ResourceVersion)
	}
	if !isFinished(j) && target == nil && j.Spec.ActiveDeadlineSeconds != nil && st.StartTime != nil {
		left := st.StartTime.Add(time.Duration(*j.Spec.ActiveDeadlineSeconds) * time.Second).Sub(now)
		c.queue.AddAfter(key, max(left, 0)+100*time.Millisecond)
	}
	return manageErr
}

// finishCondition decides whether a running job has failed (back-off
// limit, active deadline, failed indexes) or met its success policy; nil
// when it goes on.
func (c *Controller) finishCondition(j *batchv1.Job, st *batchv1.JobStatus, active []*corev1.Pod, failedIdx map[int]bool, now time.Time, mt metav1.Time) *batchv1.JobCondition {
	switch {
	case pastBackoffLimit(j, st, active):
		return newCondition(batchv1.JobFailureTarget, batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit", mt)
	case pastActiveDeadline(j, st, now):
		return newCondition(batchv1.JobFailureTarget, batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline", mt)
	}
	if !isIndexed(j) {
		return nil
	}
	succeeded := parseIndexes(st.CompletedIndexes)
	if hasBackoffLimitPerIndex(j) {
		switch {
		case j.Spec.MaxFailedIndexes != nil && len(failedIdx) > int(*j.Spec.MaxFailedIndexes):
			return newCondition(batchv1.JobFailureTarget, batchv1.JobReasonMaxFailedIndexesExceeded, "Job has exceeded the specified maximal number of failed indexes", mt)
		case len(failedIdx) > 0 && len(failedIdx)+len(succeeded) >= int(*j.Spec.Completions):
			return newCondition(batchv1.JobFailureTarget, batchv1.JobReasonFailedIndexes, "Job has failed indexes", mt)
		}
	}
	if msg, ok := matchSuccessPolicy(j, succeeded); ok {
		return newCondition(batchv1.JobSuccessCriteriaMet, batchv1.JobReasonSuccessPolicy, msg, mt)
	}
	return nil
}

// finish adds the terminal condition that follows the interim one (Failed
// after FailureTarget, Complete after SuccessCriteriaMet, with its reason
// and message) once every pod is counted and none is terminating.
func (c *Controller) finish(j *batchv1.Job, st *batchv1.JobStatus, pods, terminating []*corev1.Pod, target *batchv1.JobCondition, mt metav1.Time) {
	if len(terminating) > 0 {
		return
	}
	if u := st.UncountedTerminatedPods; u != nil && len(u.Succeeded)+len(u.Failed) > 0 {
		return
	}
	for _, p := range pods {
		if hasFinalizer(p) && !c.finalizerRemoved(p) {
			return // the next sync counts it
		}
	}
	if target.Type == batchv1.JobFailureTarget {
		setCondition(st, batchv1.JobFailed, corev1.ConditionTrue, target.Reason, target.Message, mt)
		c.recorder.Event(j, corev1.EventTypeWarning, target.Reason, target.Message)
		return
	}
	setCondition(st, batchv1.JobComplete, corev1.ConditionTrue, target.Reason, target.Message, mt)
	st.CompletionTime = &mt
	c.recorder.Event(j, corev1.EventTypeNormal, "Completed", "Job completed")
}

// interimCondition returns the job's FailureTarget or SuccessCriteriaMet
// condition when it is True.
func interimCondition(j *batchv1.Job) *batchv1.JobCondition {
	for _, t := range []batchv1.JobConditionType{batchv1.JobFailureTarget, batchv1.JobSuccessCriteriaMet} {
		if cur := condition(&j.Status, t); cur != nil && cur.Status == corev1.ConditionTrue {
			return cur.DeepCopy()
		}
	}
	return nil
}

func newCondition(t batchv1.JobConditionType, reason, msg string, now metav1.Time) *batchv1.JobCondition {
	return &batchv1.JobCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: msg, LastProbeTime: now, LastTransitionTime: now}
}

// claimPods returns every pod of the job (active, terminating, finished)
// after adoption and release: an adopted pod gets the tracking finalizer,
// a released one loses it (as Kubernetes' pod controller-ref manager).
func (c *Controller) claimPods(ctx context.Context, j *batchv1.Job) ([]*corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("job %s/%s: selector: %w", j.Namespace, j.Name, err)
	}
	return c.cc.ClaimPods(ctx, c.podInf, j, jobGVK, sel, func(ctx context.Context) (metav1.Object, error) {
		return c.cc.Client.BatchV1().Jobs(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
	}, nil, batchv1.JobTrackingFinalizer)
}

// trackFinishedPods counts finished pods exactly once: their UIDs go to
// status.uncountedTerminatedPods (persisted, with the failed indexes and
// an interim FailureTarget condition), then their finalizers are removed,
// then the UIDs move to the succeeded and failed counters (and
// completedIndexes). A crash between the steps repeats only what is left.
// target is the job's interim condition (FailureTarget or
// SuccessCriteriaMet), nil while it runs: once set, every pod's finalizer
// goes; after a failure every pod that did not succeed counts as failed.
// Failures a pod failure policy ignores are not counted.
func (c *Controller) trackFinishedPods(ctx context.Context, j *batchv1.Job, pods []*corev1.Pod, target *batchv1.JobCondition, failedIdx map[int]bool) (*batchv1.Job, error) {
	unc := j.Status.UncountedTerminatedPods
	if unc == nil {
		unc = &batchv1.UncountedTerminatedPods{}
	}
	added := false
	var holding []*corev1.Pod
	for _, p := range pods {
		if !hasFinalizer(p) || c.finalizerRemoved(p) {
			continue
		}
		succ, fail, remove := classify(j, p, target)
		if !remove {
			continue
		}
		holding = append(holding, p)
		if !succ && !fail || slices.Contains(unc.Succeeded, p.UID) || slices.Contains(unc.Failed, p.UID) {
			continue
		}
		added = true
		if succ {
			unc.Succeeded = append(unc.Succeeded, p.UID)
		} else {
			unc.Failed = append(unc.Failed, p.UID)
			c.failedAt.Store(j.UID, c.cc.Now())
		}
	}
	// What must be on record before a finalizer goes: the uncounted pods,
	// the failed indexes and a FailJob rule's FailureTarget.
	var fi *string
	if hasBackoffLimitPerIndex(j) {
		fi = ptr(formatIndexes(failedIdx))
	}
	needTarget := target != nil && target.Type == batchv1.JobFailureTarget && condition(&j.Status, target.Type) == nil
	needIdx := fi != nil && (j.Status.FailedIndexes == nil || *j.Status.FailedIndexes != *fi)
	if added || (len(holding) > 0 && (needTarget || needIdx)) {
		cp := j.DeepCopy()
		cp.Status.UncountedTerminatedPods = unc
		if needIdx {
			cp.Status.FailedIndexes = fi
		}
		if needTarget {
			setCondition(&cp.Status, target.Type, corev1.ConditionTrue, target.Reason, target.Message, target.LastTransitionTime)
		}
		out, err := c.cc.Client.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{})
		if err != nil {
			return nil, err
		}
		c.written.Store(j.Namespace+"/"+j.Name, out.ResourceVersion)
		j = out
		unc = j.Status.UncountedTerminatedPods
		if unc == nil {
			unc = &batchv1.UncountedTerminatedPods{}
		}
	}
	for _, p := range holding {
		if err := c.removeFinalizer(ctx, p); err != nil {
			return nil, err
		}
	}
	if len(unc.Succeeded)+len(unc.Failed) == 0 {
		return j, nil
	}
	// Every uncounted pod has lost its finalizer (or is gone): count them.
	cp := j.DeepCopy()
	st := &cp.Status
	st.Succeeded += int32(len(unc.Succeeded))
	st.Failed += int32(len(unc.Failed))
	if isIndexed(j) && len(unc.Succeeded) > 0 {
		done := parseIndexes(st.CompletedIndexes)
		for _, p := range pods {
			if i, ok := completionIndex(p, j); ok && slices.Contains(unc.Succeeded, p.UID) {
				done[i] = true
			}
		}
		st.CompletedIndexes = formatIndexes(done)
	}
	st.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
	out, err := c.cc.Client.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	c.written.Store(j.Namespace+"/"+j.Name, out.ResourceVersion)
	return out, nil
}

// classify says whether a pod that still has the tracking finalizer is
// done with (remove: its finalizer may go) and how it counts: succeeded,
// failed, or neither (a failure the pod failure policy ignores, or a pod
// stopped because the job met its success criteria).
func classify(j *batchv1.Job, p *corev1.Pod, target *batchv1.JobCondition) (succ, fail, remove bool) {
	if p.Status.Phase == corev1.PodSucceeded {
		return true, false, true
	}
	failed := isPodFailed(p, j)
	switch {
	case target == nil:
	case target.Type == batchv1.JobFailureTarget:
		failed = true
	default:
		// The job met its success criteria: the pods it stops now are
		// not failures.
		failed = p.Status.Phase == corev1.PodFailed
	}
	if failed {
		if isIndexed(j) {
			if _, ok := completionIndex(p, j); !ok {
				return false, false, true
			}
		}
		return false, countsAsFailure(j, p), true
	}
	return false, false, target != nil
}

// rvOlder reports whether resourceVersion a is older than b (both decimal
// Raft indexes in Skiff; anything unparsable counts as not older).
func rvOlder(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && x < y
}

func isFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func isIndexed(j *batchv1.Job) bool {
	return j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion
}

// pastBackoffLimit: more failed pods than backoffLimit (restartPolicy
// Never), or more container restarts among the active pods
// (restartPolicy OnFailure).
func pastBackoffLimit(j *batchv1.Job, st *batchv1.JobStatus, active []*corev1.Pod) bool {
	if j.Spec.BackoffLimit == nil {
		return false
	}
	limit := *j.Spec.BackoffLimit
	if j.Spec.Template.Spec.RestartPolicy == corev1.RestartPolicyOnFailure {
		var restarts int32
		for _, p := range active {
			for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
				restarts += cs.RestartCount
			}
		}
		if limit == 0 {
			return restarts > 0 || st.Failed > 0
		}
		if restarts+st.Failed > limit {
			return true
		}
	}
	return st.Failed > limit
}

func pastActiveDeadline(j *batchv1.Job, st *batchv1.JobStatus, now time.Time) bool {
	if j.Spec.ActiveDeadlineSeconds == nil || st.StartTime == nil || (j.Spec.Suspend != nil && *j.Spec.Suspend) {
		return false
	}
	return !now.Before(st.StartTime.Add(time.Duration(*j.Spec.ActiveDeadlineSeconds) * time.Second))
}

// complete: enough pods (or indexes) succeeded.
func complete(j *batchv1.Job, st *batchv1.JobStatus, active []*corev1.Pod) bool {
	if isIndexed(j) {
		return j.Spec.Completions != nil && int32(len(parseIndexes(st.CompletedIndexes))) >= *j.Spec.Completions
	}
	if j.Spec.Completions == nil {
		return st.Succeeded > 0 && len(active) == 0
	}
	return st.Succeeded >= *j.Spec.Completions
}

// syncSuspended keeps the Suspended condition (and resets startTime on
// resume, as Kubernetes does).
func (c *Controller) syncSuspended(j *batchv1.Job, st *batchv1.JobStatus, suspended bool, now metav1.Time) {
	cur := condition(st, batchv1.JobSuspended)
	switch {
	case suspended && (cur == nil || cur.Status != corev1.ConditionTrue):
		setCondition(st, batchv1.JobSuspended, corev1.ConditionTrue, "JobSuspended", "Job suspended", now)
		c.recorder.Event(j, corev1.EventTypeNormal, "Suspended", "Job suspended")
	case !suspended && cur != nil && cur.Status == corev1.ConditionTrue:
		setCondition(st, batchv1.JobSuspended, corev1.ConditionFalse, "JobResumed", "Job resumed", now)
		st.StartTime = nil
		c.recorder.Event(j, corev1.EventTypeNormal, "Resumed", "Job resumed")
	}
}

func condition(st *batchv1.JobStatus, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

func setCondition(st *batchv1.JobStatus, t batchv1.JobConditionType, s corev1.ConditionStatus, reason, msg string, now metav1.Time) {
	if cur := condition(st, t); cur != nil {
		if cur.Status != s {
			cur.LastTransitionTime = now
		}
		cur.Status, cur.Reason, cur.Message, cur.LastProbeTime = s, reason, msg, now
		return
	}
	st.Conditions = append(st.Conditions, batchv1.JobCondition{Type: t, Status: s, Reason: reason, Message: msg,
		LastProbeTime: now, LastTransitionTime: now})
}

func ptr[T any](v T) *T { return &v }
