package fsm

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/skiff-io/skiff/fsm/state"
)

// EventType is the kind of a watch event.
type EventType string

const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
)

// Event is one change applied at Index. Events are shared by all watchers
// and never modified.
type Event struct {
	Type   EventType
	Index  uint64
	Object *state.Object
	// Prev is the object before an update or delete.
	Prev *state.Object
}

// ErrExpired means a watch asked for changes that are no longer in the ring
// (too old, too slow, or the state was replaced by a snapshot restore). The
// API answers it with 410 Gone, reason Expired, and clients relist.
var ErrExpired = errors.New("too old resource version")

// DefaultRingSize is the number of events kept for watch resumption.
const DefaultRingSize = 100_000

// ring is a bounded buffer of the most recent events.
type ring struct {
	mu     sync.Mutex
	buf    []*Event
	start  int // position of the oldest event
	n      int
	oldest uint64 // every event with Index > oldest is in the ring
	epoch  uint64 // bumped when the ring is reset by a restore
	notify chan struct{}
	// Filtered watchers are woken only by events they match, through these
	// indexes (kube-apiserver's watch cache does the same with its
	// triggers): 10,000 watches of single objects cost nothing per
	// unrelated write.
	byResource map[string]map[*Watcher]struct{}
	byName     map[WatchFilter]map[*Watcher]struct{}
}

func newRing(size int, oldest uint64) *ring {
	if size <= 0 {
		size = DefaultRingSize
	}
	return &ring{buf: make([]*Event, size), oldest: oldest, notify: make(chan struct{}),
		byResource: map[string]map[*Watcher]struct{}{}, byName: map[WatchFilter]map[*Watcher]struct{}{}}
}

// WatchFilter selects the events a watcher is woken for. Empty fields match
// anything; Name needs Resource (and Namespace for namespaced kinds).
type WatchFilter struct {
	Resource  string
	Namespace string
	Name      string
}

func (f WatchFilter) matches(o *state.Object) bool {
	if o == nil {
		return false
	}
	return (f.Resource == "" || o.Key.Resource == f.Resource) &&
		(f.Namespace == "" || o.Key.Namespace == f.Namespace) &&
		(f.Name == "" || o.Key.Name == f.Name)
}

// register indexes a filtered watcher. Called with r.mu held.
func (r *ring) register(w *Watcher) {
	idx, key := r.byResource, w.filter.Resource
	if w.filter.Name != "" {
		set := r.byName[w.filter]
		if set == nil {
			set = map[*Watcher]struct{}{}
			r.byName[w.filter] = set
		}
		set[w] = struct{}{}
		return
	}
	set := idx[key]
	if set == nil {
		set = map[*Watcher]struct{}{}
		idx[key] = set
	}
	set[w] = struct{}{}
}

func (r *ring) unregister(w *Watcher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w.filter.Name != "" {
		if set := r.byName[w.filter]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(r.byName, w.filter)
			}
		}
		return
	}
	if set := r.byResource[w.filter.Resource]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(r.byResource, w.filter.Resource)
		}
	}
}

// candidates calls fn for the filtered watchers that may want ev (fn checks
// the filter). Called with r.mu held.
func (r *ring) candidates(ev *Event, fn func(*Watcher)) {
	o := ev.Object
	if o == nil {
		return
	}
	for w := range r.byResource[o.Key.Resource] {
		fn(w)
	}
	for w := range r.byResource[""] {
		fn(w)
	}
	if len(r.byName) > 0 {
		for w := range r.byName[WatchFilter{Resource: o.Key.Resource, Namespace: o.Key.Namespace, Name: o.Key.Name}] {
			fn(w)
		}
		if o.Key.Namespace != "" {
			for w := range r.byName[WatchFilter{Resource: o.Key.Resource, Name: o.Key.Name}] {
				fn(w)
			}
		}
	}
}

// wake signals the filtered watchers that ev matches.
func (r *ring) wake(ev *Event) {
	r.candidates(ev, func(w *Watcher) {
		if w.filter.matches(ev.Object) {
			w.wake()
		}
	})
}

// evict marks the filtered watchers that had not yet read ev, which they
// want, as having lost it: their next read is an expiry.
func (r *ring) evict(ev *Event) {
	r.candidates(ev, func(w *Watcher) {
		if w.cursor < ev.Index && w.filter.matches(ev.Object) {
			w.lost = true
		}
	})
}

func (w *Watcher) wake() {
	select {
	case w.wakeCh <- struct{}{}:
	default:
	}
}

func (r *ring) at(i int) *Event { return r.buf[(r.start+i)%len(r.buf)] }

// publish adds the events of one applied run of commands and wakes every
// waiting watcher (also when there are none: the index moved).
func (r *ring) publish(events []*Event) {
	r.mu.Lock()
	for _, ev := range events {
		if r.n == len(r.buf) {
			evicted := r.buf[r.start]
			r.buf[r.start] = nil
			r.start = (r.start + 1) % len(r.buf)
			r.n--
			if evicted.Index > r.oldest {
				r.oldest = evicted.Index
			}
			r.evict(evicted)
		}
		r.buf[(r.start+r.n)%len(r.buf)] = ev
		r.n++
		r.wake(ev)
	}
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
}

// reset empties the ring after a restore at index; watchers of the old
// state end with ErrExpired.
func (r *ring) reset(index uint64) {
	r.mu.Lock()
	for i := range r.buf {
		r.buf[i] = nil
	}
	r.start, r.n = 0, 0
	r.oldest = index
	r.epoch++
	for _, set := range r.byResource {
		for w := range set {
			w.wake()
		}
	}
	for _, set := range r.byName {
		for w := range set {
			w.wake()
		}
	}
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
}

// since returns the events after cursor, or a channel closed when more
// arrive.
func (r *ring) since(cursor, epoch uint64) ([]*Event, <-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if epoch != r.epoch || cursor < r.oldest {
		return nil, nil, ErrExpired
	}
	i := sort.Search(r.n, func(i int) bool { return r.at(i).Index > cursor })
	if i == r.n {
		return nil, r.notify, nil
	}
	out := make([]*Event, 0, r.n-i)
	for ; i < r.n; i++ {
		out = append(out, r.at(i))
	}
	return out, nil, nil
}

// sinceFiltered returns w's matching events after its cursor and moves the
// cursor past every event it scanned. A cursor that fell out of the ring is
// expired only if an event w wanted was evicted before w read it: otherwise
// nothing was lost and it jumps ahead.
func (r *ring) sinceFiltered(w *Watcher) ([]*Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w.epoch != r.epoch {
		return nil, ErrExpired
	}
	if w.lost {
		return nil, ErrExpired
	}
	if w.cursor < r.oldest {
		w.cursor = r.oldest
	}
	i := sort.Search(r.n, func(i int) bool { return r.at(i).Index > w.cursor })
	var out []*Event
	for ; i < r.n; i++ {
		if ev := r.at(i); w.filter.matches(ev.Object) {
			out = append(out, ev)
		}
	}
	if r.n > 0 && r.at(r.n-1).Index > w.cursor {
		w.cursor = r.at(r.n - 1).Index
	}
	return out, nil
}

// Watcher reads the events after a resourceVersion. It holds no goroutine:
// callers pull with Next. A filtered watcher (FSM.WatchFiltered) must be
// stopped with Stop.
type Watcher struct {
	r      *ring
	cursor uint64
	epoch  uint64

	// Filtered watchers only; lost and (for them) cursor are guarded by r.mu.
	filtered bool
	filter   WatchFilter
	wakeCh   chan struct{}
	lost     bool // an event it wanted was evicted before it read it
}

// Stop releases a filtered watcher; it is a no-op for others.
func (w *Watcher) Stop() {
	if w.filtered {
		w.r.unregister(w)
	}
}

// Cursor is the index of the last event returned.
func (w *Watcher) Cursor() uint64 { return w.cursor }

// Next blocks until there are events after the cursor, then returns them
// in order. It returns ErrExpired when the events were dropped from the
// ring or the state was restored from a snapshot, and ctx.Err() when ctx
// ends.
func (w *Watcher) Next(ctx context.Context) ([]*Event, error) {
	if w.filtered {
		return w.nextFiltered(ctx)
	}
	for {
		evs, wait, err := w.r.since(w.cursor, w.epoch)
		if err != nil {
			return nil, err
		}
		if len(evs) > 0 {
			w.cursor = evs[len(evs)-1].Index
			return evs, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wait:
		}
	}
}

func (w *Watcher) nextFiltered(ctx context.Context) ([]*Event, error) {
	for {
		evs, err := w.r.sinceFiltered(w)
		if err != nil {
			return nil, err
		}
		if len(evs) > 0 {
			return evs, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-w.wakeCh:
		}
	}
}

// WatchStats reports the ring's fill (events held, of capacity) and the
// filtered watchers registered (the API server's watches), for metrics.
func (f *FSM) WatchStats() (events, capacity, watchers int) {
	r := f.ring
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, set := range r.byResource {
		watchers += len(set)
	}
	for _, set := range r.byName {
		watchers += len(set)
	}
	return r.n, len(r.buf), watchers
}
