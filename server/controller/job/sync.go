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
	if j, err = c.trackFinishedPods(ctx, j, pods); err != nil {
		return err
	}
	now := c.cc.Now()
	mt := controller.Now(c.cc.Now)
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
		var failReason, failMsg string
		switch {
		case pastBackoffLimit(j, st, active):
			failReason, failMsg = batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit"
		case pastActiveDeadline(j, st, now):
			failReason, failMsg = batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline"
		}
		switch {
		case failReason != "":
			manageErr = c.deletePods(ctx, key, j, active)
			setCondition(st, batchv1.JobFailureTarget, corev1.ConditionTrue, failReason, failMsg, mt)
			setCondition(st, batchv1.JobFailed, corev1.ConditionTrue, failReason, failMsg, mt)
			c.recorder.Event(j, corev1.EventTypeWarning, failReason, failMsg)
			active = nil
		case complete(j, st, active):
			manageErr = c.deletePods(ctx, key, j, active)
			setCondition(st, batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods", mt)
			setCondition(st, batchv1.JobComplete, corev1.ConditionTrue, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods", mt)
			st.CompletionTime = &mt
			c.recorder.Event(j, corev1.EventTypeNormal, "Completed", "Job completed")
			active = nil
		case satisfied:
			active, manageErr = c.manage(ctx, key, j, st, pods, active, suspended, now)
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
	if !isFinished(j) && j.Spec.ActiveDeadlineSeconds != nil && st.StartTime != nil {
		left := st.StartTime.Add(time.Duration(*j.Spec.ActiveDeadlineSeconds) * time.Second).Sub(now)
		c.queue.AddAfter(key, max(left, 0)+100*time.Millisecond)
	}
	return manageErr
}

// claimPods returns every pod of the job (active, terminating, finished)
// after adoption and release.
func (c *Controller) claimPods(ctx context.Context, j *batchv1.Job) ([]*corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("job %s/%s: selector: %w", j.Namespace, j.Name, err)
	}
	return c.cc.ClaimPods(ctx, c.podInf, j, jobGVK, sel, func(ctx context.Context) (metav1.Object, error) {
		return c.cc.Client.BatchV1().Jobs(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
	}, nil)
}

// trackFinishedPods counts finished pods exactly once: their UIDs go to
// status.uncountedTerminatedPods (persisted), then their finalizers are
// removed, then the UIDs move to the succeeded and failed counters (and
// completedIndexes). A crash between the steps repeats only what is left.
func (c *Controller) trackFinishedPods(ctx context.Context, j *batchv1.Job, pods []*corev1.Pod) (*batchv1.Job, error) {
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
		succ, fail := p.Status.Phase == corev1.PodSucceeded, podFailed(p)
		if !succ && !fail {
			continue
		}
		holding = append(holding, p)
		if slices.Contains(unc.Succeeded, p.UID) || slices.Contains(unc.Failed, p.UID) {
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
	if added {
		cp := j.DeepCopy()
		cp.Status.UncountedTerminatedPods = unc
		out, err := c.cc.Client.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{})
		if err != nil {
			return nil, err
		}
		c.written.Store(j.Namespace+"/"+j.Name, out.ResourceVersion)
		j = out
		unc = j.Status.UncountedTerminatedPods
	}
	if len(unc.Succeeded)+len(unc.Failed) == 0 {
		return j, nil
	}
	for _, p := range holding {
		if err := c.removeFinalizer(ctx, p); err != nil {
			return nil, err
		}
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

// rvOlder reports whether resourceVersion a is older than b (both decimal
// Raft indexes in Skiff; anything unparsable counts as not older).
func rvOlder(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && x < y
}

// podFailed: the pod failed, or is being deleted before it succeeded.
func podFailed(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || (p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodSucceeded)
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
