package agent

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The kubelet's reason and message for a pod past spec.activeDeadlineSeconds.
const (
	reasonDeadlineExceeded  = "DeadlineExceeded"
	messageDeadlineExceeded = "Pod was active on the node longer than the specified deadline"
)

// activeDeadlineLeft is how long the pod may still run under
// spec.activeDeadlineSeconds, counted from its start on this node; ok is
// false when it has no deadline. The deadline is read from the pod each
// sync, so an update that lowers it (the only change the API allows on a
// running pod) takes effect at once.
func activeDeadlineLeft(pod *corev1.Pod, st *podState, now time.Time) (left time.Duration, ok bool) {
	if pod.Spec.ActiveDeadlineSeconds == nil || st.startTime.IsZero() {
		return 0, false
	}
	end := st.startTime.Add(time.Duration(*pod.Spec.ActiveDeadlineSeconds) * time.Second)
	return end.Sub(now), true
}

// failPastDeadline fails a pod whose active deadline has passed, as the
// kubelet: phase Failed, reason DeadlineExceeded and a Warning event; the
// next sync kills its containers (a terminal pod). It returns when to look
// again for a pod with a deadline still ahead (0: no deadline), and true
// when the pod was failed.
func (a *Agent) failPastDeadline(pod *corev1.Pod, st *podState) (time.Duration, bool) {
	left, ok := activeDeadlineLeft(pod, st, time.Now())
	if !ok {
		return 0, false
	}
	if left > 0 {
		return left, false
	}
	st.terminal = true
	st.rejectReason, st.rejectMessage = reasonDeadlineExceeded, messageDeadlineExceeded
	a.log.Info("pod past its active deadline", "pod", pod.Namespace+"/"+pod.Name, "activeDeadlineSeconds", *pod.Spec.ActiveDeadlineSeconds)
	a.events.podEvent(pod, corev1.EventTypeWarning, reasonDeadlineExceeded, messageDeadlineExceeded)
	return 0, true
}
