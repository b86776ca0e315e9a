package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// executePreemption nominates the node for the preemptor and evicts the
// victims: each gets a DisruptionTarget condition, a Preempted event and
// is deleted (with its grace period). Pods of lower priority nominated to
// the same node lose their nomination.
func (s *Scheduler) executePreemption(ctx context.Context, pod *PodInfo, pr preemptionResult) {
	s.stats.preemptions.Add(1)
	s.log.Info("preempting", "pod", pod.Pod.Namespace+"/"+pod.Pod.Name, "node", pr.Node, "victims", describeVictims(pr.Victims))
	s.queue.SetNominated(pod, pr.Node)
	for _, np := range s.snap.Nominated[pr.Node] {
		if np.Priority < pod.Priority && np.Pod.UID != pod.Pod.UID {
			s.queue.SetNominated(np, "")
			s.events.patchStatus(ctx, np.Pod, []byte(`{"status":{"nominatedNodeName":null}}`))
		}
	}
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	for _, v := range pr.Victims {
		victim := v.Pod
		cond, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{{
			Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "PreemptionByScheduler",
			Message: Name + ": preempting to accommodate a higher priority pod", LastTransitionTime: now,
		}}}})
		msg := fmt.Sprintf("Preempted by pod %s on node %s", pod.Pod.UID, pr.Node)
		s.events.emit(victim, corev1.EventTypeNormal, "Preempted", msg)
		s.events.queuePatch(ctx, statusPatch{pod: victim, patch: cond, then: func(ctx context.Context) {
			uid := victim.UID
			err := s.client.CoreV1().Pods(victim.Namespace).Delete(ctx, victim.Name, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				s.log.Warn("delete preemption victim", "pod", victim.Namespace+"/"+victim.Name, "err", err)
			}
		}})
	}
}
