package scheduler

import (
	"context"
	"encoding/json"
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

// eventRecorder writes the scheduler's Events and pod status patches off
// the scheduling path, with a few workers. Events are best effort: when
// their queue is full they are dropped (and counted), so that a burst of
// thousands of bindings never waits on them. A repeated event (same pod,
// reason and message within ten minutes) bumps the first one's count.
type eventRecorder struct {
	client  kubernetes.Interface
	log     *slog.Logger
	events  chan *corev1.Event
	patches chan statusPatch

	mu      sync.Mutex
	seen    map[string]*seenEvent
	dropped int
}

type seenEvent struct {
	name  string
	count int32
	last  time.Time
}

type statusPatch struct {
	pod   *corev1.Pod
	patch []byte
	// then runs after the patch (victim deletion).
	then func(ctx context.Context)
}

const (
	// Few event workers: under a burst of bindings most Scheduled events
	// are dropped rather than compete with the bindings for the API.
	eventWorkers     = 2
	patchWorkers     = 8
	eventDedupWindow = 10 * time.Minute
)

func newEventRecorder(client kubernetes.Interface, log *slog.Logger) *eventRecorder {
	return &eventRecorder{client: client, log: log, events: make(chan *corev1.Event, 1024),
		patches: make(chan statusPatch, 4096), seen: map[string]*seenEvent{}}
}

// emit queues an event about pod.
func (r *eventRecorder) emit(pod *corev1.Pod, typ, reason, msg string) {
	now := time.Now()
	mt := metav1.NewTime(now.UTC().Truncate(time.Second))
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", pod.Name, now.UnixNano()), Namespace: pod.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name,
			UID: pod.UID, ResourceVersion: pod.ResourceVersion},
		Reason: reason, Message: msg, Type: typ,
		Source:         corev1.EventSource{Component: Name},
		FirstTimestamp: mt, LastTimestamp: mt, Count: 1,
		ReportingController: Name, ReportingInstance: Name,
		Action: "Scheduling",
	}
	if reason == "Scheduled" {
		ev.Action = "Binding"
	}
	select {
	case r.events <- ev:
	default:
		r.mu.Lock()
		r.dropped++
		r.mu.Unlock()
	}
}

// patchStatus queues a strategic merge patch of pod's status.
func (r *eventRecorder) patchStatus(ctx context.Context, pod *corev1.Pod, patch []byte) {
	r.queuePatch(ctx, statusPatch{pod: pod, patch: patch})
}

func (r *eventRecorder) queuePatch(ctx context.Context, p statusPatch) {
	select {
	case r.patches <- p:
	case <-ctx.Done():
	}
}

func (r *eventRecorder) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := 0; i < eventWorkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-r.events:
					r.send(ctx, ev)
				}
			}
		}()
	}
	for i := 0; i < patchWorkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case p := <-r.patches:
					r.applyPatch(ctx, p)
				}
			}
		}()
	}
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
			r.mu.Lock()
			n := r.dropped
			r.dropped = 0
			for k, v := range r.seen {
				if time.Since(v.last) > eventDedupWindow {
					delete(r.seen, k)
				}
			}
			r.mu.Unlock()
			if n > 0 {
				r.log.Info("events dropped: queue full", "count", n)
			}
		}
	}
}

func (r *eventRecorder) send(ctx context.Context, ev *corev1.Event) {
	key := string(ev.InvolvedObject.UID) + "|" + ev.Reason + "|" + ev.Message
	r.mu.Lock()
	s := r.seen[key]
	if s != nil && time.Since(s.last) > eventDedupWindow {
		s = nil
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	events := r.client.CoreV1().Events(ev.Namespace)
	if s != nil {
		r.mu.Lock()
		count := s.count + 1
		r.mu.Unlock()
		patch := fmt.Sprintf(`{"count":%d,"lastTimestamp":%q}`, count, ev.LastTimestamp.UTC().Format(time.RFC3339))
		_, err := events.Patch(ctx, s.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		if err == nil {
			r.mu.Lock()
			s.count, s.last = count, time.Now()
			r.mu.Unlock()
			return
		}
		if !apierrors.IsNotFound(err) {
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
	r.seen[key] = &seenEvent{name: ev.Name, count: 1, last: time.Now()}
	r.mu.Unlock()
}

func (r *eventRecorder) applyPatch(ctx context.Context, p statusPatch) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if p.patch != nil {
		_, err := r.client.CoreV1().Pods(p.pod.Namespace).Patch(pctx, p.pod.Name, types.StrategicMergePatchType, p.patch,
			metav1.PatchOptions{}, "status")
		if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
			r.log.Warn("patch pod status", "pod", p.pod.Namespace+"/"+p.pod.Name, "err", err)
		}
	}
	if p.then != nil {
		p.then(pctx)
	}
}

// podScheduledPatch sets PodScheduled=False (and the nominated node, if
// any) as a strategic merge patch of the status.
func podScheduledPatch(reason, msg, nominate string) []byte {
	st := map[string]any{
		"conditions": []map[string]any{{
			"type": corev1.PodScheduled, "status": corev1.ConditionFalse, "reason": reason, "message": msg,
			"lastProbeTime": nil, "lastTransitionTime": metav1.NewTime(time.Now().UTC().Truncate(time.Second)),
		}},
	}
	if nominate != "" {
		st["nominatedNodeName"] = nominate
	}
	b, _ := json.Marshal(map[string]any{"status": st})
	return b
}
