package apiserver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// LocalListerWatcher lists and watches one kind for informers running in
// the same process as the API server (the leader's scheduler and
// controllers): typed objects straight from the state, with no HTTP, TLS
// or JSON between the two. Lists and watches keep the API's semantics —
// the same resourceVersions, label and field selectors, bookmarks, 410
// Expired when a resourceVersion has left the event ring — but skip
// authentication and authorization: it is for the master's own loops only.
//
// Watch event objects are decoded once and shared with every other watch
// of the API server (the event cache), so informers must not modify them:
// the client-go rule for informer caches.
type LocalListerWatcher struct {
	s         *APIServer
	kind      *registry.Kind
	namespace string
	codec     runtime.ParameterCodec
}

var (
	_ cache.ListerWatcherWithContext = (*LocalListerWatcher)(nil)
	_ cache.ListerWatcher            = (*LocalListerWatcher)(nil)
)

// LocalListerWatcher returns the in-process lister-watcher of kind in
// namespace ("" for all namespaces or a cluster-scoped kind).
func (s *APIServer) LocalListerWatcher(kind *registry.Kind, namespace string) *LocalListerWatcher {
	if !kind.Namespaced {
		namespace = ""
	}
	return &LocalListerWatcher{s: s, kind: kind, namespace: namespace, codec: runtime.NewParameterCodec(s.reg.Scheme())}
}

// IsWatchListSemanticsUnSupported tells client-go's reflector to list and
// then watch (a list here costs no more than a watch-list replay).
func (lw *LocalListerWatcher) IsWatchListSemanticsUnSupported() bool { return true }

// options converts client-go's options to the API's, with the same checks
// as a request's query parameters.
func (lw *LocalListerWatcher) options(o metav1.ListOptions, watch bool) (*listOptions, error) {
	q, err := lw.codec.EncodeParameters(&o, metav1.SchemeGroupVersion)
	if err != nil {
		return nil, badRequest("list options: %v", err)
	}
	if watch {
		q.Del("watch")
	}
	return parseListQuery(q, lw.kind, watch)
}

// List returns every matching object (limit and continue are ignored: the
// whole list is in memory already).
func (lw *LocalListerWatcher) List(o metav1.ListOptions) (runtime.Object, error) {
	return lw.ListWithContext(context.Background(), o)
}

// ListWithContext is List.
func (lw *LocalListerWatcher) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	opts, err := lw.options(o, false)
	if err != nil {
		return nil, err
	}
	opts.limit, opts.cont = 0, nil
	snap, err := lw.s.readAt(ctx, opts.resourceVersion)
	if err != nil {
		return nil, err
	}
	if opts.rvMatch == metav1.ResourceVersionMatchExact {
		if want, _ := parseRV(opts.resourceVersion); want != snap.Index() {
			return nil, tooOldResourceVersion(want, snap.Index())
		}
	}
	var (
		items  []runtime.Object
		stored []*state.Object
		derr   error
	)
	snap.List(lw.kind.StorageResource(), lw.namespace, "", func(so *state.Object) bool {
		obj, err := lw.kind.Decode(so)
		if err != nil {
			derr = err
			return false
		}
		if opts.matches(lw.kind, obj) {
			items, stored = append(items, obj), append(stored, so)
		}
		return true
	})
	if derr != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("list %s: %w", lw.kind.Resource, derr))
	}
	list := lw.kind.NewList()
	if err := meta.SetList(list, items); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if _, ok := list.(*corev1.PodList); ok {
		// The scheduler binds these next, as a rule.
		now := lw.s.now()
		for i, obj := range items {
			lw.s.pods.rememberListed(stored[i], obj.(*corev1.Pod), now)
		}
	}
	la, err := meta.ListAccessor(list)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	la.SetResourceVersion(strconv.FormatUint(snap.Index(), 10))
	return list, nil
}

// Watch starts a watch.
func (lw *LocalListerWatcher) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return lw.WatchWithContext(context.Background(), o)
}

// WatchWithContext starts a watch that ends when ctx ends or on Stop. The
// start follows handleWatch: resourceVersion N streams the changes after
// N; "" and "0" (without sendInitialEvents) first replay the current
// objects as ADDED; sendInitialEvents=true replays them and then sends
// the initial-events-end bookmark.
func (lw *LocalListerWatcher) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	opts, err := lw.options(o, true)
	if err != nil {
		return nil, err
	}
	initial := opts.sendInitialEvents != nil && *opts.sendInitialEvents
	legacyInitial := opts.sendInitialEvents == nil && (opts.resourceVersion == "" || opts.resourceVersion == "0")
	var (
		snap  *state.Snapshot
		start uint64
	)
	if initial || legacyInitial {
		if snap, err = lw.s.readAt(ctx, opts.resourceVersion); err != nil {
			return nil, err
		}
		start = snap.Index()
	} else if start, _ = parseRV(opts.resourceVersion); opts.resourceVersion == "" {
		cur, err := lw.s.store.Read(ctx, true, 0)
		if err != nil {
			return nil, storeError(err)
		}
		start = cur.Index()
	}
	filter := fsm.WatchFilter{Resource: lw.kind.StorageResource(), Namespace: lw.namespace}
	if name, ok := opts.field.RequiresExactMatch("metadata.name"); ok {
		filter.Name = name
	}
	watcher, err := lw.s.store.Watch(start, filter)
	if err != nil {
		if errors.Is(err, fsm.ErrExpired) {
			cur := uint64(0)
			if s, rerr := lw.s.store.Read(ctx, false, 0); rerr == nil {
				cur = s.Index()
			}
			return nil, tooOldResourceVersion(start, cur)
		}
		return nil, apierrors.NewInternalError(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &localWatch{lw: lw, opts: opts, watcher: watcher, ctx: wctx, cancel: cancel,
		ch: make(chan watch.Event, 128), done: make(chan struct{})}
	go w.run(snap, initial)
	return w, nil
}

// localWatch is one in-process watch: a goroutine turning the FSM
// watcher's events into typed watch events.
type localWatch struct {
	lw      *LocalListerWatcher
	opts    *listOptions
	watcher *fsm.Watcher
	ctx     context.Context
	cancel  context.CancelFunc
	ch      chan watch.Event
	done    chan struct{}
	stop    sync.Once
}

// ResultChan is closed when the watch ends.
func (w *localWatch) ResultChan() <-chan watch.Event { return w.ch }

// Stop ends the watch and waits for its goroutine.
func (w *localWatch) Stop() {
	w.stop.Do(w.cancel)
	<-w.done
}

// send delivers ev unless the watch is stopped.
func (w *localWatch) send(ev watch.Event) bool {
	select {
	case w.ch <- ev:
		return true
	case <-w.ctx.Done():
		return false
	}
}

func (w *localWatch) run(snap *state.Snapshot, initial bool) {
	defer close(w.done)
	defer close(w.ch)
	defer w.watcher.Stop()
	s, kind, opts := w.lw.s, w.lw.kind, w.opts
	if snap != nil {
		ok := true
		snap.List(kind.StorageResource(), w.lw.namespace, "", func(so *state.Object) bool {
			obj, err := kind.Decode(so)
			if err != nil {
				s.log.Warn("local watch: cannot decode object", "key", so.Key, "err", err)
				return true
			}
			if opts.matches(kind, obj) {
				s.pods.remember(so, obj)
				ok = w.send(watch.Event{Type: watch.Added, Object: obj})
			}
			return ok
		})
		if !ok {
			return
		}
		if initial && opts.allowBookmarks && !w.bookmark(snap.Index(), true) {
			return
		}
	}
	resource, ns := kind.StorageResource(), w.lw.namespace
	name, oneName := opts.field.RequiresExactMatch("metadata.name")
	lastSent, lastBookmark := s.now(), s.now()
	for {
		waitCtx, cancel := w.ctx, context.CancelFunc(func() {})
		if opts.allowBookmarks {
			due := lastSent.Add(s.cfg.BookmarkIdle)
			if limit := lastBookmark.Add(s.cfg.BookmarkMax); limit.Before(due) {
				due = limit
			}
			waitCtx, cancel = context.WithTimeout(w.ctx, max(due.Sub(s.now()), time.Millisecond))
		}
		evs, err := w.watcher.Next(waitCtx)
		cancel()
		if err != nil {
			switch {
			case errors.Is(err, fsm.ErrExpired):
				cur := uint64(0)
				if snap, rerr := s.store.Read(w.ctx, false, 0); rerr == nil {
					cur = snap.Index()
				}
				st := tooOldResourceVersion(w.watcher.Cursor(), cur).Status()
				w.send(watch.Event{Type: watch.Error, Object: &st})
				return
			case w.ctx.Err() != nil:
				return
			}
			if !w.bookmark(w.watcher.Cursor(), false) {
				return
			}
			lastSent, lastBookmark = s.now(), s.now()
			continue
		}
		for _, ev := range evs {
			o := ev.Object
			if o == nil || o.Key.Resource != resource || (ns != "" && o.Key.Namespace != ns) || (oneName && o.Key.Name != name) {
				continue
			}
			typ, ce, err := s.filterEvent(kind, ev, opts)
			if err != nil {
				s.log.Warn("local watch: cannot decode event object", "key", o.Key, "err", err)
				continue
			}
			if ce == nil {
				continue
			}
			obj, err := ce.decoded()
			if err != nil {
				continue
			}
			if ev.Type != fsm.Deleted && ce.key.obj == o && ev.Index == o.ModifyIndex {
				s.pods.remember(o, obj)
			}
			if !w.send(watch.Event{Type: typ, Object: obj}) {
				return
			}
			lastSent = s.now()
		}
	}
}

// bookmark sends a BOOKMARK at rv.
func (w *localWatch) bookmark(rv uint64, initialEnd bool) bool {
	obj := w.lw.kind.New()
	m := mustAccessor(obj)
	m.SetResourceVersion(strconv.FormatUint(rv, 10))
	if initialEnd {
		m.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	return w.send(watch.Event{Type: watch.Bookmark, Object: obj})
}
