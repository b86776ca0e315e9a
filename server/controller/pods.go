package controller

import (
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IsPodActive: not finished and not being deleted.
func IsPodActive(p *corev1.Pod) bool {
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && p.DeletionTimestamp == nil
}

// IsPodTerminal: Succeeded or Failed.
func IsPodTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// PodCondition returns the pod's condition of type t, or nil.
func PodCondition(s *corev1.PodStatus, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			return &s.Conditions[i]
		}
	}
	return nil
}

// IsPodReady: the Ready condition is True.
func IsPodReady(p *corev1.Pod) bool {
	c := PodCondition(&p.Status, corev1.PodReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

// IsPodAvailable: ready for at least minReadySeconds at now.
func IsPodAvailable(p *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	c := PodCondition(&p.Status, corev1.PodReady)
	if c == nil || c.Status != corev1.ConditionTrue {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	d := time.Duration(minReadySeconds) * time.Second
	return !c.LastTransitionTime.IsZero() && !c.LastTransitionTime.Add(d).After(now)
}

// AvailableIn returns how long until a ready pod becomes available (0 when
// it already is or is not ready).
func AvailableIn(p *corev1.Pod, minReadySeconds int32, now time.Time) time.Duration {
	c := PodCondition(&p.Status, corev1.PodReady)
	if minReadySeconds == 0 || c == nil || c.Status != corev1.ConditionTrue {
		return 0
	}
	at := c.LastTransitionTime.Add(time.Duration(minReadySeconds) * time.Second)
	if d := at.Sub(now); d > 0 {
		return d
	}
	return 0
}

// FilterActive returns the active pods.
func FilterActive(pods []*corev1.Pod) []*corev1.Pod {
	out := make([]*corev1.Pod, 0, len(pods))
	for _, p := range pods {
		if IsPodActive(p) {
			out = append(out, p)
		}
	}
	return out
}

// SortForDeletion orders pods so that the ones to delete first come first,
// as Kubernetes ranks them: unassigned before assigned, Pending before
// Unknown before Running, not ready before ready, pods on nodes crowded
// with pods of the same owner first (ranks: pods per node), ready for a
// shorter time first, more restarts first, newer first.
func SortForDeletion(pods []*corev1.Pod) {
	perNode := map[string]int{}
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			perNode[p.Spec.NodeName]++
		}
	}
	phaseRank := map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}
	readySince := func(p *corev1.Pod) time.Time {
		if c := PodCondition(&p.Status, corev1.PodReady); c != nil {
			return c.LastTransitionTime.Time
		}
		return time.Time{}
	}
	restarts := func(p *corev1.Pod) int32 {
		var n int32
		for _, c := range p.Status.ContainerStatuses {
			n = max(n, c.RestartCount)
		}
		return n
	}
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") {
			return a.Spec.NodeName == ""
		}
		if ra, rb := phaseRank[a.Status.Phase], phaseRank[b.Status.Phase]; ra != rb {
			return ra < rb
		}
		if IsPodReady(a) != IsPodReady(b) {
			return !IsPodReady(a)
		}
		if na, nb := perNode[a.Spec.NodeName], perNode[b.Spec.NodeName]; na != nb {
			return na > nb
		}
		if IsPodReady(a) && IsPodReady(b) {
			if ta, tb := readySince(a), readySince(b); !ta.Equal(tb) {
				return ta.After(tb)
			}
		}
		if ra, rb := restarts(a), restarts(b); ra != rb {
			return ra > rb
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.After(b.CreationTimestamp.Time)
		}
		return a.Name > b.Name
	})
}

// SetPodCondition sets (or adds) a pod condition, keeping
// lastTransitionTime when the status does not change. It reports whether
// anything changed.
func SetPodCondition(s *corev1.PodStatus, c corev1.PodCondition) bool {
	for i := range s.Conditions {
		cur := &s.Conditions[i]
		if cur.Type != c.Type {
			continue
		}
		if cur.Status == c.Status && cur.Reason == c.Reason && cur.Message == c.Message {
			return false
		}
		if cur.Status == c.Status {
			c.LastTransitionTime = cur.LastTransitionTime
		}
		*cur = c
		return true
	}
	s.Conditions = append(s.Conditions, c)
	return true
}

// Now returns a metav1.Time at second precision, as the API stores it.
func Now(now func() time.Time) metav1.Time {
	return metav1.NewTime(now().UTC().Truncate(time.Second))
}
