package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Queue is a rate-limited work queue of object keys ("namespace/name", or
// "name" for cluster-scoped objects).
type Queue = workqueue.TypedRateLimitingInterface[string]

// NewQueue returns a named queue whose failed items are retried with a
// per-item exponential back-off (5 ms doubling up to maxDelay, 60 s if 0)
// and an overall 50 qps bucket, like kube-controller-manager's default
// but with a shorter ceiling so a wedged object is looked at again soon.
// It reports the workqueue_* metrics under its name (queuemetrics.go).
func NewQueue(name string, maxDelay time.Duration) Queue {
	if maxDelay <= 0 {
		maxDelay = time.Minute
	}
	rl := workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](5*time.Millisecond, maxDelay),
		&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(50), 500)},
	)
	m := queueMetrics.instance(name)
	q := workqueue.NewTypedRateLimitingQueueWithConfig(rl, workqueue.TypedRateLimitingQueueConfig[string]{Name: name, MetricsProvider: m})
	return &meteredQueue{Queue: q, m: m}
}

// KeyOf returns the queue key of an informer object, tombstones included.
func KeyOf(obj any) (string, bool) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	return key, err == nil
}

// Unwrap returns the object inside a deletion tombstone, typed.
func Unwrap[T any](obj any) (T, bool) {
	if t, ok := obj.(T); ok {
		return t, true
	}
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		t, ok := tomb.Obj.(T)
		return t, ok
	}
	var zero T
	return zero, false
}

// SyncFunc reconciles the object with the given key.
type SyncFunc func(ctx context.Context, key string) error

// RunWorkers runs n workers taking keys from q and passing them to sync
// until ctx ends; it returns when they have stopped. A failed key is
// retried rate-limited (a Conflict is retried at once: the cache will
// catch up); a successful one is forgotten.
func RunWorkers(ctx context.Context, q Queue, n int, log *slog.Logger, fn SyncFunc) {
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for processNext(ctx, q, log, fn) {
			}
		}()
	}
	wg.Wait()
}

func processNext(ctx context.Context, q Queue, log *slog.Logger, fn SyncFunc) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	err := fn(ctx, key)
	switch {
	case err == nil:
		q.Forget(key)
	case ctx.Err() != nil:
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
		log.Debug("sync: retrying", "key", key, "err", err)
		q.AddRateLimited(key)
	default:
		if q.NumRequeues(key) < 5 {
			log.Debug("sync failed", "key", key, "err", err)
		} else {
			log.Warn("sync failed", "key", key, "retries", q.NumRequeues(key), "err", err)
		}
		q.AddRateLimited(key)
	}
	return true
}

// Handler returns informer handlers that put the key of every added,
// updated and deleted object in q.
func Handler(q Queue) cache.ResourceEventHandlerFuncs {
	add := func(obj any) {
		if key, ok := KeyOf(obj); ok {
			q.Add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    add,
		UpdateFunc: func(_, obj any) { add(obj) },
		DeleteFunc: add,
	}
}

// AddHandler adds h to inf; the error (only possible on a stopped
// informer) is logged.
func AddHandler(inf cache.SharedIndexInformer, h cache.ResourceEventHandler, log *slog.Logger) {
	if _, err := inf.AddEventHandler(h); err != nil {
		log.Error("add event handler", "err", err)
	}
}

// WaitForSync waits until the informers have synced or ctx ends.
func WaitForSync(ctx context.Context, infs ...cache.SharedIndexInformer) bool {
	synced := make([]cache.InformerSynced, 0, len(infs))
	for _, inf := range infs {
		synced = append(synced, inf.HasSynced)
	}
	return cache.WaitForCacheSync(ctx.Done(), synced...)
}
