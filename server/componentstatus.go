package server

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// componentStatuses answers componentstatuses (kubectl get cs) from this
// master's view: the scheduler and the controllers are healthy while the
// cluster has a leader that runs them, and each Raft server (the part
// etcd plays in Kubernetes) is an etcd-<i> healthy when its /readyz says
// so (a witness serves no API: healthy while it is in a cluster with a
// leader).
type componentStatuses struct{ s *Server }

func (c componentStatuses) ComponentStatuses(ctx context.Context) []corev1.ComponentStatus {
	s := c.s
	_, leaderID := s.raft.LeaderWithID()
	loops, why := leaderID != "", "no Raft leader: the scheduler and controllers run on the leader"
	if s.raft.State() == raft.Leader && !s.leaderReady.Load() {
		loops, why = false, "this master is the leader and has not started the leader work yet"
	}
	out := []corev1.ComponentStatus{
		componentStatus("scheduler", loops, why),
		componentStatus("controller-manager", loops, why),
	}
	members, err := s.memberStatuses(ctx)
	if err != nil {
		return append(out, componentStatus("etcd-0", false, err.Error()))
	}
	for i, m := range members {
		ok := m.State == "ready" || (m.Role == "witness" && leaderID != "")
		why := fmt.Sprintf("master %s is %s", m.Name, m.State)
		if m.Detail != "" {
			why += ": " + m.Detail
		}
		out = append(out, componentStatus(fmt.Sprintf("etcd-%d", i), ok, why))
	}
	return out
}

func componentStatus(name string, healthy bool, why string) corev1.ComponentStatus {
	c := corev1.ComponentCondition{Type: corev1.ComponentHealthy, Status: corev1.ConditionTrue, Message: "ok"}
	if !healthy {
		c.Status, c.Message, c.Error = corev1.ConditionFalse, "", why
	}
	return corev1.ComponentStatus{ObjectMeta: metav1.ObjectMeta{Name: name}, Conditions: []corev1.ComponentCondition{c}}
}
