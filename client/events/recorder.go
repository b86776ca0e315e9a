// Package events writes core/v1 Events for components that must never
// wait on them: the kubelet's pod workers and the scheduler's binding
// path. Events are queued and sent by a few workers; when the queue is
// full they are dropped and counted in the log. A repeat of an event (same
// object, field path, reason and message) within ten minutes bumps the
// count and last timestamp of the first one instead of making a new
// object, as client-go's correlator does.
package events

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

// DedupWindow is how long a sent event is bumped instead of repeated.
const DedupWindow = 10 * time.Minute

// Config of a Recorder.
type Config struct {
	Client kubernetes.Interface
	// Component is the event source and reporting controller
	// ("kubelet", "default-scheduler").
	Component string
	// Host is the source host and reporting instance (the node name for
	// the kubelet); Component when empty.
	Host string
	// Workers sending events (1) and the queue's length (1000).
	Workers int
	Queue   int
	Logger  *slog.Logger
}

// Recorder queues and sends Events. Run must be running for anything to
// be sent.
type Recorder struct {
	cfg   Config
	queue chan *corev1.Event

	mu      sync.Mutex
	seen    map[string]*sent
	once    map[string]bool
	dropped int
}

type sent struct {
	name  string
	count int32
	last  time.Time
}

// New returns a Recorder; start it with Run.
func New(cfg Config) *Recorder {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1000
	}
	if cfg.Host == "" {
		cfg.Host = cfg.Component
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Recorder{cfg: cfg, queue: make(chan *corev1.Event, cfg.Queue), seen: map[string]*sent{}, once: map[string]bool{}}
}

// PodRef is the reference to pod (to one of its containers when
// container is not empty) that Events name as their involved object.
func PodRef(pod *corev1.Pod, container string) corev1.ObjectReference {
	ref := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name,
		UID: pod.UID, ResourceVersion: pod.ResourceVersion}
	if container != "" {
		ref.FieldPath = "spec.containers{" + container + "}"
		for _, c := range pod.Spec.InitContainers {
			if c.Name == container {
				ref.FieldPath = "spec.initContainers{" + container + "}"
			}
		}
	}
	return ref
}

// Emit queues an event about ref; action may be empty. It never blocks.
func (r *Recorder) Emit(ref corev1.ObjectReference, typ, reason, action, msg string) {
	now := time.Now()
	mt := metav1.NewTime(now.UTC().Truncate(time.Second))
	ev := &corev1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()), Namespace: ref.Namespace},
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             msg,
		Type:                typ,
		Action:              action,
		Source:              corev1.EventSource{Component: r.cfg.Component},
		FirstTimestamp:      mt,
		LastTimestamp:       mt,
		Count:               1,
		ReportingController: r.cfg.Component,
		ReportingInstance:   r.cfg.Host,
	}
	if r.cfg.Host != r.cfg.Component {
		ev.Source.Host = r.cfg.Host
	}
	select {
	case r.queue <- ev:
	default:
		r.mu.Lock()
		r.dropped++
		r.mu.Unlock()
	}
}

// EmitOnce is Emit, but only the first time for this reference's object
// and field path, reason and message: later calls send nothing, however
// long after.
func (r *Recorder) EmitOnce(ref corev1.ObjectReference, typ, reason, action, msg string) {
	key := key(ref, reason, msg)
	r.mu.Lock()
	if r.once[key] {
		r.mu.Unlock()
		return
	}
	if len(r.once) > 100000 {
		r.once = map[string]bool{}
	}
	r.once[key] = true
	r.mu.Unlock()
	r.Emit(ref, typ, reason, action, msg)
}

func key(ref corev1.ObjectReference, reason, msg string) string {
	return string(ref.UID) + "|" + ref.FieldPath + "|" + reason + "|" + msg
}

// Run sends queued events until ctx is done; every 10 s it logs how many
// were dropped and forgets events older than DedupWindow.
func (r *Recorder) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := 0; i < r.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-r.queue:
					r.send(ctx, ev)
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
				if time.Since(v.last) > DedupWindow {
					delete(r.seen, k)
				}
			}
			r.mu.Unlock()
			if n > 0 {
				r.cfg.Logger.Warn("events dropped: queue full", "count", n)
			}
		}
	}
}

func (r *Recorder) send(ctx context.Context, ev *corev1.Event) {
	k := key(ev.InvolvedObject, ev.Reason, ev.Message)
	r.mu.Lock()
	s := r.seen[k]
	if s != nil && time.Since(s.last) > DedupWindow {
		s = nil
	}
	var count int32
	if s != nil {
		count = s.count + 1
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	events := r.cfg.Client.CoreV1().Events(ev.Namespace)
	if s != nil {
		patch := fmt.Sprintf(`{"count":%d,"lastTimestamp":%q}`, count, ev.LastTimestamp.UTC().Format(time.RFC3339))
		_, err := events.Patch(ctx, s.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		if err == nil {
			r.mu.Lock()
			s.count, s.last = count, time.Now()
			r.mu.Unlock()
			return
		}
		if !apierrors.IsNotFound(err) {
			r.cfg.Logger.Debug("update event", "reason", ev.Reason, "err", err)
			return
		}
		// Gone (expired or deleted): create it anew.
	}
	if _, err := events.Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		if ctx.Err() == nil && !apierrors.IsNotFound(err) {
			r.cfg.Logger.Debug("create event", "reason", ev.Reason, "err", err)
		}
		return
	}
	r.mu.Lock()
	r.seen[k] = &sent{name: ev.Name, count: 1, last: time.Now()}
	r.mu.Unlock()
}
