package job

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller"
)

// manage creates or deletes pods so that the job runs as many as it
// wants now; it returns the active pods left. Terminating pods are
// replaced only when the job replaces any terminating pod
// (podReplacementPolicy TerminatingOrFailed); the pods of failed indexes
// are stopped and those indexes are not run again.
func (c *Controller) manage(ctx context.Context, key string, j *batchv1.Job, st *batchv1.JobStatus, all, active, terminating []*corev1.Pod, failedIdx map[int]bool, suspended bool, now time.Time) ([]*corev1.Pod, error) {
	if suspended {
		return nil, c.deletePods(ctx, key, j, active)
	}
	parallelism := int32(1)
	if j.Spec.Parallelism != nil {
		parallelism = *j.Spec.Parallelism
	}
	var want int32
	switch {
	case isIndexed(j):
		want = min(parallelism, max(*j.Spec.Completions-int32(len(parseIndexes(st.CompletedIndexes)))-int32(len(failedIdx)), 0))
	case j.Spec.Completions == nil:
		want = parallelism
		if st.Succeeded > 0 {
			want = min(int32(len(active)), parallelism)
		}
	default:
		want = max(min(*j.Spec.Completions-st.Succeeded, parallelism), 0)
	}
	// Indexed: pods with an out-of-range, completed, failed or duplicate
	// index go first.
	var extra []*corev1.Pod
	if isIndexed(j) {
		done := parseIndexes(st.CompletedIndexes)
		seen := map[int]bool{}
		var keep []*corev1.Pod
		for _, p := range active {
			i, ok := completionIndex(p, j)
			if !ok || done[i] || failedIdx[i] || seen[i] {
				extra = append(extra, p)
				continue
			}
			seen[i] = true
			keep = append(keep, p)
		}
		active = keep
	}
	if n := int32(len(active)) - want; n > 0 {
		victims := append([]*corev1.Pod(nil), active...)
		controller.SortForDeletion(victims)
		extra = append(extra, victims[:n]...)
		active = victims[n:]
	}
	if len(extra) > 0 {
		return active, c.deletePods(ctx, key, j, extra)
	}
	busy := active
	if onlyReplaceFailed(j) {
		busy = append(append([]*corev1.Pod(nil), active...), terminating...)
	}
	n := want - int32(len(busy))
	if n <= 0 {
		return active, nil
	}
	var indexes []int
	if isIndexed(j) {
		done := parseIndexes(st.CompletedIndexes)
		taken := map[int]bool{}
		for _, p := range busy {
			if i, ok := completionIndex(p, j); ok {
				taken[i] = true
			}
		}
		var wait time.Duration
		for i := 0; i < int(*j.Spec.Completions) && len(indexes) < int(n); i++ {
			if done[i] || taken[i] || failedIdx[i] {
				continue
			}
			if hasBackoffLimitPerIndex(j) {
				// Each index backs off by its own failures.
				if w := c.backoffLeft(j, podsOfIndex(j, all, i), now, false); w > 0 {
					if wait == 0 || w < wait {
						wait = w
					}
					continue
				}
			}
			indexes = append(indexes, i)
		}
		if wait > 0 {
			c.queue.AddAfter(key, wait)
		}
		n = int32(len(indexes))
		if n == 0 {
			return active, nil
		}
	}
	if !hasBackoffLimitPerIndex(j) {
		if wait := c.backoffLeft(j, all, now, true); wait > 0 {
			c.queue.AddAfter(key, wait)
			return active, nil
		}
	}
	c.exp.ExpectCreationsAndDeletions(key, int(n), nil)
	ref := controller.OwnerRef(j, jobGVK)
	created, err := controller.CreatePods(ctx, c.cc.Client, j.Namespace, int(n), func(i int) *corev1.Pod {
		p := controller.PodFromTemplate(&j.Spec.Template, j, &ref)
		p.Finalizers = append(p.Finalizers, batchv1.JobTrackingFinalizer)
		if isIndexed(j) {
			setIndex(p, j, indexes[i])
			if hasBackoffLimitPerIndex(j) {
				counted, ignored := nextIndexFailureCounts(j, all, indexes[i])
				p.Annotations[batchv1.JobIndexFailureCountAnnotation] = strconv.Itoa(int(counted))
				if ignored > 0 {
					p.Annotations[batchv1.JobIndexIgnoredFailureCountAnnotation] = strconv.Itoa(int(ignored))
				}
			}
		}
		return p
	})
	for _, p := range created {
		c.recorder.Eventf(j, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", p.Name)
	}
	if skipped := int(n) - len(created); skipped > 0 {
		c.exp.Lower(key, skipped, 0)
	}
	active = append(active, created...)
	if err != nil {
		if controller.IsNamespaceTerminating(err) {
			return active, nil
		}
		c.recorder.Eventf(j, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return active, err
	}
	return active, nil
}

// deletePods deletes pods (their finalizer keeps them until counted).
func (c *Controller) deletePods(ctx context.Context, key string, j *batchv1.Job, pods []*corev1.Pod) error {
	if len(pods) == 0 {
		return nil
	}
	keys := make([]string, len(pods))
	for i, p := range pods {
		keys[i] = p.Namespace + "/" + p.Name
	}
	c.exp.ExpectCreationsAndDeletions(key, 0, keys)
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func(i int, p *corev1.Pod) {
			defer wg.Done()
			err := c.cc.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				c.exp.PodDeletionObserved(key, keys[i])
				errs[i] = err
				return
			}
			c.recorder.Eventf(j, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", p.Name)
		}(i, p)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// backoffLeft is how long to wait before replacing failed pods: the base
// doubled per failure since the last success, counted from the last
// failure, at most the maximum.
func (c *Controller) backoffLeft(j *batchv1.Job, pods []*corev1.Pod, now time.Time, jobWide bool) time.Duration {
	var lastSuccess, lastFailure time.Time
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded {
			if t := finishTime(p); t.After(lastSuccess) {
				lastSuccess = t
			}
		}
	}
	failures := 0
	for _, p := range pods {
		if !isPodFailed(p, j) {
			continue
		}
		t := finishTime(p)
		if t.Before(lastSuccess) {
			continue
		}
		failures++
		if t.After(lastFailure) {
			lastFailure = t
		}
	}
	if failures == 0 {
		return 0
	}
	if t, ok := c.failedAt.Load(j.UID); ok && jobWide && t.(time.Time).After(lastFailure) {
		lastFailure = t.(time.Time)
	}
	d := c.opts.BackoffBase
	for i := 1; i < failures && d < c.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, c.opts.BackoffMax)
	return lastFailure.Add(d).Sub(now)
}

// finishTime is when a pod finished: its containers' last finish, or its
// deletion, or (unknown) its creation.
func finishTime(p *corev1.Pod) time.Time {
	var t time.Time
	for _, cs := range p.Status.ContainerStatuses {
		if term := cs.State.Terminated; term != nil && term.FinishedAt.After(t) {
			t = term.FinishedAt.Time
		}
	}
	if t.IsZero() && p.DeletionTimestamp != nil {
		t = p.DeletionTimestamp.Time
	}
	if t.IsZero() {
		if c := controller.PodCondition(&p.Status, corev1.PodReady); c != nil {
			t = c.LastTransitionTime.Time
		}
	}
	if t.IsZero() {
		t = p.CreationTimestamp.Time
	}
	return t
}

// podsOfIndex returns the pods of completion index i.
func podsOfIndex(j *batchv1.Job, pods []*corev1.Pod, i int) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		if k, ok := completionIndex(p, j); ok && k == i {
			out = append(out, p)
		}
	}
	return out
}

// completionIndex reads a pod's completion index (valid for the job).
func completionIndex(p *corev1.Pod, j *batchv1.Job) (int, bool) {
	v, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		v, ok = p.Labels[batchv1.JobCompletionIndexAnnotation]
	}
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 0 || j.Spec.Completions == nil || i >= int(*j.Spec.Completions) {
		return 0, false
	}
	return i, true
}

// setIndex makes p the pod of completion index i: annotation and label,
// hostname <job>-<i>, and JOB_COMPLETION_INDEX in every container.
func setIndex(p *corev1.Pod, j *batchv1.Job, i int) {
	idx := strconv.Itoa(i)
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Annotations[batchv1.JobCompletionIndexAnnotation] = idx
	p.Labels[batchv1.JobCompletionIndexAnnotation] = idx
	p.GenerateName = fmt.Sprintf("%s-%d-", j.Name, i)
	if p.Spec.Hostname == "" {
		p.Spec.Hostname = fmt.Sprintf("%s-%d", j.Name, i)
	}
	env := corev1.EnvVar{Name: "JOB_COMPLETION_INDEX", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: fmt.Sprintf("metadata.annotations['%s']", batchv1.JobCompletionIndexAnnotation)},
	}}
	for k := range p.Spec.InitContainers {
		p.Spec.InitContainers[k].Env = append(p.Spec.InitContainers[k].Env, env)
	}
	for k := range p.Spec.Containers {
		p.Spec.Containers[k].Env = append(p.Spec.Containers[k].Env, env)
	}
}

// parseIndexes parses "1,3-5" into a set.
func parseIndexes(s string) map[int]bool {
	out := map[int]bool{}
	if s == "" {
		return out
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for i := a; i <= b; i++ {
			out[i] = true
		}
	}
	return out
}

// formatIndexes renders a set as Kubernetes does ("1,3-5", "7,8").
func formatIndexes(set map[int]bool) string {
	idx := make([]int, 0, len(set))
	for i := range set {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var parts []string
	for k := 0; k < len(idx); {
		start := k
		for k+1 < len(idx) && idx[k+1] == idx[k]+1 {
			k++
		}
		switch k - start {
		case 0:
			parts = append(parts, strconv.Itoa(idx[k]))
		case 1: // two neighbours are listed, not a range
			parts = append(parts, strconv.Itoa(idx[start]), strconv.Itoa(idx[k]))
		default:
			parts = append(parts, fmt.Sprintf("%d-%d", idx[start], idx[k]))
		}
		k++
	}
	return strings.Join(parts, ",")
}
