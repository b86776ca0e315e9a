package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// eventRecorder sends core/v1 Events from component "kubelet". Repeats of
// the same event (object, reason, message) within ten minutes bump the
// count of the first instead of making a new object, as client-go's
// correlator does. Sending is asynchronous; when the queue is full, events
// are dropped (and counted in the log), never blocking a pod worker.
type eventRecorder struct {
	client kubernetes.Interface
	node   string
	log    *slog.Logger
	queue  chan *corev1.Event

	mu   sync.Mutex
	seen map[string]*seenEvent
	once map[string]bool
}

type seenEvent struct {
	name  string
	count int32
	first metav1.Time
	last  time.Time
}

const eventDedupWindow = 10 * time.Minute

func newEventRecorder(client kubernetes.Interface, node string, log *slog.Logger) *eventRecorder {
	return &eventRecorder{client: client, node: node, log: log, queue: make(chan *corev1.Event, 1000),
		seen: map[string]*seenEvent{}, once: map[string]bool{}}
}

func (r *eventRecorder) podEvent(pod *corev1.Pod, typ, reason, msg string) {
	r.emit(pod, "", typ, reason, msg)
}

// podEventOnce sends an event only once per pod, reason and message.
func (r *eventRecorder) podEventOnce(pod *corev1.Pod, typ, reason, msg string) {
	if r.first(string(pod.UID) + "|" + reason + "|" + msg) {
		r.emit(pod, "", typ, reason, msg)
	}
}

func (r *eventRecorder) containerEvent(pod *corev1.Pod, container, typ, reason, msg string) {
	r.emit(pod, container, typ, reason, msg)
}

// containerEventOnce sends an event once per container and message.
func (r *eventRecorder) containerEventOnce(pod *corev1.Pod, container, typ, reason, msg string) {
	if r.first(string(pod.UID) + "|" + container + "|" + reason + "|" + msg) {
		r.emit(pod, container, typ, reason, msg)
	}
}

func (r *eventRecorder) first(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.once[key] {
		return false
	}
	if len(r.once) > 100000 {
		r.once = map[string]bool{}
	}
	r.once[key] = true
	return true
}

func (r *eventRecorder) emit(pod *corev1.Pod, container, typ, reason, msg string) {
	ref := corev1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
	}
	if container != "" {
		ref.FieldPath = containerFieldPath(pod, container)
	}
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", pod.Name, time.Now().UnixNano()), Namespace: pod.Namespace},
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             msg,
		Type:                typ,
		Source:              corev1.EventSource{Component: "kubelet", Host: r.node},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "kubelet",
		ReportingInstance:   r.node,
	}
	select {
	case r.queue <- ev:
	default:
		r.log.Warn("event queue full, event dropped", "reason", reason, "pod", pod.Namespace+"/"+pod.Name)
	}
}

func containerFieldPath(pod *corev1.Pod, name string) string {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return "spec.initContainers{" + name + "}"
		}
	}
	return "spec.containers{" + name + "}"
}

func (r *eventRecorder) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-r.queue:
			r.send(ctx, ev)
		}
	}
}

func (r *eventRecorder) send(ctx context.Context, ev *corev1.Event) {
	key := string(ev.InvolvedObject.UID) + "|" + ev.InvolvedObject.FieldPath + "|" + ev.Reason + "|" + ev.Message
	r.mu.Lock()
	s := r.seen[key]
	if s != nil && time.Since(s.last) > eventDedupWindow {
		s = nil
	}
	if len(r.seen) > 4096 {
		for k, v := range r.seen {
			if time.Since(v.last) > eventDedupWindow {
				delete(r.seen, k)
			}
		}
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	events := r.client.CoreV1().Events(ev.Namespace)
	if s != nil {
		patch := fmt.Sprintf(`{"count":%d,"lastTimestamp":%q}`, s.count+1, ev.LastTimestamp.UTC().Format(time.RFC3339))
		if _, err := events.Patch(ctx, s.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err == nil {
			r.mu.Lock()
			s.count++
			s.last = time.Now()
			r.mu.Unlock()
			return
		} else if !apierrors.IsNotFound(err) {
			r.log.Debug("update event", "err", err)
			return
		}
	}
	if _, err := events.Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		if ctx.Err() == nil && !apierrors.IsNotFound(err) {
			r.log.Debug("create event", "reason", ev.Reason, "err", err)
		}
		return
	}
	r.mu.Lock()
	r.seen[key] = &seenEvent{name: ev.Name, count: 1, first: ev.FirstTimestamp, last: time.Now()}
	r.mu.Unlock()
}
