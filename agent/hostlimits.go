package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeRuntimeDegraded is the Node condition the agent sets (True) when the
// host withholds features from containers — capabilities missing from
// root's bounding set, no CAP_SYS_RESOURCE to lower oom_score_adj, cgroup
// controllers or devices it cannot have — and they run degraded instead
// of failing (the runtime's Degradations).
const NodeRuntimeDegraded corev1.NodeConditionType = "RuntimeDegraded"

// Reason of the NodeRuntimeDegraded condition and of the Node event.
const reasonHostLimits = "HostLimitsContainers"

// degrader is the optional part of a runtime that reports what this host
// withholds (runtime/libcontainer.Runtime).
type degrader interface{ Degradations() []string }

// runtimeDegradations asks the runtime, once, what it cannot give.
func runtimeDegradations(rt any) []string {
	if d, ok := rt.(degrader); ok {
		return d.Degradations()
	}
	return nil
}

// degradedMessage is the NodeRuntimeDegraded condition's message, or
// false when the runtime lacks nothing.
func (a *Agent) degradedMessage() (string, bool) {
	if len(a.degradations) == 0 {
		return "", false
	}
	return "containers run degraded on this host: " + strings.Join(a.degradations, "; "), true
}

// reportDegradations sends one Warning event about the Node when the
// runtime runs containers degraded (the condition says it on every status
// update; the runtime logged it once when it started).
func (a *Agent) reportDegradations(ctx context.Context) {
	msg, ok := a.degradedMessage()
	if !ok {
		return
	}
	client := a.cfg.EventClient
	if client == nil {
		client = a.cfg.Client
	}
	now := time.Now()
	mt := metav1.NewTime(now.UTC().Truncate(time.Second))
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", a.cfg.NodeName, now.UnixNano()), Namespace: metav1.NamespaceDefault},
		// Node events name the node by name and UID = name, as the kubelet's.
		InvolvedObject:      corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: a.cfg.NodeName, UID: types.UID(a.cfg.NodeName)},
		Reason:              reasonHostLimits,
		Message:             msg,
		Type:                corev1.EventTypeWarning,
		Source:              corev1.EventSource{Component: "kubelet", Host: a.cfg.NodeName},
		FirstTimestamp:      mt,
		LastTimestamp:       mt,
		Count:               1,
		ReportingController: "kubelet",
		ReportingInstance:   a.cfg.NodeName,
	}
	if _, err := client.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		a.log.Warn("node event", "reason", reasonHostLimits, "err", err)
	}
}
