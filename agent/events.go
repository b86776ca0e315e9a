package agent

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/client/events"
)

// eventRecorder sends the kubelet's Events (component "kubelet", host the
// node) through the shared recorder: asynchronous, never blocking a pod
// worker, repeats bumping the first event's count.
type eventRecorder struct{ r *events.Recorder }

func newEventRecorder(client kubernetes.Interface, node string, log *slog.Logger) *eventRecorder {
	return &eventRecorder{r: events.New(events.Config{Client: client, Component: "kubelet", Host: node, Logger: log})}
}

func (e *eventRecorder) run(ctx context.Context) { e.r.Run(ctx) }

func (e *eventRecorder) podEvent(pod *corev1.Pod, typ, reason, msg string) {
	e.r.Emit(events.PodRef(pod, ""), typ, reason, "", msg)
}

// podEventOnce sends an event only once per pod, reason and message.
func (e *eventRecorder) podEventOnce(pod *corev1.Pod, typ, reason, msg string) {
	e.r.EmitOnce(events.PodRef(pod, ""), typ, reason, "", msg)
}

func (e *eventRecorder) containerEvent(pod *corev1.Pod, container, typ, reason, msg string) {
	e.r.Emit(events.PodRef(pod, container), typ, reason, "", msg)
}

// containerEventOnce sends an event once per container, reason and message.
func (e *eventRecorder) containerEventOnce(pod *corev1.Pod, container, typ, reason, msg string) {
	e.r.EmitOnce(events.PodRef(pod, container), typ, reason, "", msg)
}
