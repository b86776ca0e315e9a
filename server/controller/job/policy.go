package job

import (
	"fmt"
	"slices"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// This file holds the Job's policies as Kubernetes' Job controller applies
// them: the pod failure policy (which failures fail the job, fail an index,
// are ignored or counted), the success policy of Indexed jobs, and the
// per-index back-off limit (backoffLimitPerIndex, maxFailedIndexes).

// onlyReplaceFailed: a pod counts as failed (and is replaced) only once it
// reaches the Failed phase, not when it starts terminating
// (podReplacementPolicy Failed, which a pod failure policy implies).
func onlyReplaceFailed(j *batchv1.Job) bool {
	return j.Spec.PodFailurePolicy != nil ||
		(j.Spec.PodReplacementPolicy != nil && *j.Spec.PodReplacementPolicy == batchv1.Failed)
}

// isPodFailed: the pod failed or, unless the job replaces only failed
// pods, is being deleted before it succeeded (an orphan or evicted pod may
// never reach the Failed phase).
func isPodFailed(p *corev1.Pod, j *batchv1.Job) bool {
	if p.Status.Phase == corev1.PodFailed {
		return true
	}
	if onlyReplaceFailed(j) {
		return false
	}
	return p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodSucceeded
}

// matchPodFailurePolicy applies the job's pod failure policy to a failed
// pod: the first matching rule decides. It returns the message of a
// FailJob match (else ""), whether the failure counts against the back-off
// limits, and the matched action ("" when no rule matched).
func matchPodFailurePolicy(pfp *batchv1.PodFailurePolicy, p *corev1.Pod) (string, bool, batchv1.PodFailurePolicyAction) {
	if pfp == nil {
		return "", true, ""
	}
	for i, r := range pfp.Rules {
		var msg string
		switch {
		case r.OnExitCodes != nil:
			cs := matchOnExitCodes(&p.Status, r.OnExitCodes)
			if cs == nil {
				continue
			}
			msg = fmt.Sprintf("Container %s for pod %s/%s failed with exit code %v matching %v rule at index %d",
				cs.Name, p.Namespace, p.Name, cs.State.Terminated.ExitCode, r.Action, i)
		case r.OnPodConditions != nil:
			pc := matchOnPodConditions(&p.Status, r.OnPodConditions)
			if pc == nil {
				continue
			}
			msg = fmt.Sprintf("Pod %s/%s has condition %v matching %v rule at index %d", p.Namespace, p.Name, pc.Type, r.Action, i)
		default:
			continue
		}
		switch r.Action {
		case batchv1.PodFailurePolicyActionIgnore:
			return "", false, r.Action
		case batchv1.PodFailurePolicyActionFailJob:
			return msg, true, r.Action
		case batchv1.PodFailurePolicyActionFailIndex, batchv1.PodFailurePolicyActionCount:
			return "", true, r.Action
		}
	}
	return "", true, ""
}

// matchOnExitCodes returns the first terminated container (app containers
// first, then init containers) whose non-zero exit code matches.
func matchOnExitCodes(s *corev1.PodStatus, req *batchv1.PodFailurePolicyOnExitCodesRequirement) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{s.ContainerStatuses, s.InitContainerStatuses} {
		for i := range list {
			cs := &list[i]
			t := cs.State.Terminated
			if t == nil || t.ExitCode == 0 || (req.ContainerName != nil && *req.ContainerName != cs.Name) {
				continue
			}
			in := slices.Contains(req.Values, t.ExitCode)
			if (req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn && in) ||
				(req.Operator == batchv1.PodFailurePolicyOnExitCodesOpNotIn && !in) {
				return cs
			}
		}
	}
	return nil
}

// matchOnPodConditions returns the first pod condition matching a pattern
// (a pattern's status defaults to True).
func matchOnPodConditions(s *corev1.PodStatus, patterns []batchv1.PodFailurePolicyOnPodConditionsPattern) *corev1.PodCondition {
	for i := range s.Conditions {
		pc := &s.Conditions[i]
		for _, pat := range patterns {
			want := pat.Status
			if want == "" {
				want = corev1.ConditionTrue
			}
			if pc.Type == pat.Type && pc.Status == want {
				return pc
			}
		}
	}
	return nil
}

// failJobMessage is the message of the first failed pod whose failure
// matches a FailJob rule ("" when none does).
func failJobMessage(j *batchv1.Job, pods []*corev1.Pod) string {
	if j.Spec.PodFailurePolicy == nil {
		return ""
	}
	for _, p := range pods {
		if !isPodFailed(p, j) {
			continue
		}
		if msg, _, _ := matchPodFailurePolicy(j.Spec.PodFailurePolicy, p); msg != "" {
			return msg
		}
	}
	return ""
}

// countsAsFailure: a failed pod's failure counts against the back-off
// limits (it is not ignored by the pod failure policy).
func countsAsFailure(j *batchv1.Job, p *corev1.Pod) bool {
	_, count, _ := matchPodFailurePolicy(j.Spec.PodFailurePolicy, p)
	return count
}

func hasBackoffLimitPerIndex(j *batchv1.Job) bool {
	return isIndexed(j) && j.Spec.BackoffLimitPerIndex != nil
}

// indexFailureCounts reads the failures of the pod's index before this
// pod, counted and ignored, from the annotations the controller put on it.
func indexFailureCounts(p *corev1.Pod) (counted, ignored int32) {
	parse := func(k string) int32 {
		v, err := strconv.ParseInt(p.Annotations[k], 10, 32)
		if err != nil || v < 0 {
			return 0
		}
		return int32(v)
	}
	return parse(batchv1.JobIndexFailureCountAnnotation), parse(batchv1.JobIndexIgnoredFailureCountAnnotation)
}

// isIndexFailed: the pod's failure fails its index, by a FailIndex rule or
// because its index has used up backoffLimitPerIndex.
func isIndexFailed(j *batchv1.Job, p *corev1.Pod) bool {
	if !isPodFailed(p, j) {
		return false
	}
	_, count, action := matchPodFailurePolicy(j.Spec.PodFailurePolicy, p)
	if action == batchv1.PodFailurePolicyActionFailIndex {
		return true
	}
	counted, _ := indexFailureCounts(p)
	return count && counted >= *j.Spec.BackoffLimitPerIndex
}

// failedIndexes is the set of failed indexes: those in the status and
// those whose pods' failures fail them now.
func failedIndexes(j *batchv1.Job, pods []*corev1.Pod) map[int]bool {
	out := map[int]bool{}
	if j.Status.FailedIndexes != nil {
		out = parseIndexes(*j.Status.FailedIndexes)
	}
	for _, p := range pods {
		if i, ok := completionIndex(p, j); ok && isIndexFailed(j, p) {
			out[i] = true
		}
	}
	return out
}

// nextIndexFailureCounts are the failure counts a new pod of index i
// carries: the failures of the index's earlier pods, counted or ignored by
// the pod failure policy.
func nextIndexFailureCounts(j *batchv1.Job, pods []*corev1.Pod, i int) (counted, ignored int32) {
	for _, p := range pods {
		if k, ok := completionIndex(p, j); !ok || k != i || !isPodFailed(p, j) {
			continue
		}
		c, ig := indexFailureCounts(p)
		if countsAsFailure(j, p) {
			c++
		} else {
			ig++
		}
		counted, ignored = max(counted, c), max(ignored, ig)
	}
	return counted, ignored
}

// matchSuccessPolicy reports whether the succeeded indexes meet a rule of
// the job's success policy, with Kubernetes' message.
func matchSuccessPolicy(j *batchv1.Job, succeeded map[int]bool) (string, bool) {
	sp := j.Spec.SuccessPolicy
	if sp == nil || len(succeeded) == 0 || j.Spec.Completions == nil {
		return "", false
	}
	for i, r := range sp.Rules {
		switch {
		case r.SucceededIndexes != nil:
			required := parseIndexes(*r.SucceededIndexes)
			n, total := 0, 0
			for k := range required {
				if k >= int(*j.Spec.Completions) {
					continue
				}
				total++
				if succeeded[k] {
					n++
				}
			}
			if total == 0 {
				continue
			}
			if n == total || (r.SucceededCount != nil && n >= int(*r.SucceededCount)) {
				return fmt.Sprintf("Matched rules at index %d", i), true
			}
		case r.SucceededCount != nil && len(succeeded) >= int(*r.SucceededCount):
			return fmt.Sprintf("Matched rules at index %d", i), true
		}
	}
	return "", false
}
