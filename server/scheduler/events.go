package scheduler

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/client/events"
)

// eventRecorder writes the scheduler's Events and pod status patches off
// the scheduling path. Events go through the shared recorder with few
// workers and are best effort: under a burst of thousands of bindings
// most Scheduled events are dropped rather than compete with the bindings
// for the API. Status patches have their own workers and are not dropped.
type eventRecorder struct {
	client  kubernetes.Interface
	log     *slog.Logger
	events  *events.Recorder
	patches chan statusPatch
}

type statusPatch struct {
	pod   *corev1.Pod
	patch []byte
	// then runs after the patch (victim deletion).
	then func(ctx context.Context)
}

const (
	eventWorkers = 2
	patchWorkers = 8
)

func newEventRecorder(client kubernetes.Interface, log *slog.Logger) *eventRecorder {
	return &eventRecorder{client: client, log: log,
		events:  events.New(events.Config{Client: client, Component: Name, Workers: eventWorkers, Queue: 1024, Logger: log}),
		patches: make(chan statusPatch, 4096)}
}

// emit queues an event about pod.
func (r *eventRecorder) emit(pod *corev1.Pod, typ, reason, msg string) {
	action := "Scheduling"
	if reason == "Scheduled" {
		action = "Binding"
	}
	r.events.Emit(events.PodRef(pod, ""), typ, reason, action, msg)
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
	wg.Add(1)
	go func() { defer wg.Done(); r.events.Run(ctx) }()
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
	wg.Wait()
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
