package controller

import (
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Events is the one event broadcaster of the controllers: events are
// written through the API (core/v1 Events, with client-go's correlation
// and spam filtering), one recorder per controller.
type Events struct {
	broadcaster record.EventBroadcaster
	mu          sync.Mutex
	recorders   map[string]record.EventRecorder
}

// NewEvents starts recording events to client.
func NewEvents(client kubernetes.Interface, log *slog.Logger) *Events {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return &Events{broadcaster: b, recorders: map[string]record.EventRecorder{}}
}

// Recorder returns the recorder of component.
func (e *Events) Recorder(component string) record.EventRecorder {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.recorders[component]; ok {
		return r
	}
	r := e.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component})
	e.recorders[component] = r
	return r
}

// Shutdown stops the broadcaster (events not yet written are dropped).
func (e *Events) Shutdown() { e.broadcaster.Shutdown() }
