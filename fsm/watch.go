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
}

func newRing(size int, oldest uint64) *ring {
	if size <= 0 {
		size = DefaultRingSize
	}
	return &ring{buf: make([]*Event, size), oldest: oldest, notify: make(chan struct{})}
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
		}
		r.buf[(r.start+r.n)%len(r.buf)] = ev
		r.n++
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

// Watcher reads the events after a resourceVersion. It holds no goroutine:
// callers pull with Next.
type Watcher struct {
	r      *ring
	cursor uint64
	epoch  uint64
}

// Cursor is the index of the last event returned.
func (w *Watcher) Cursor() uint64 { return w.cursor }

// Next blocks until there are events after the cursor, then returns them
// in order. It returns ErrExpired when the events were dropped from the
// ring or the state was restored from a snapshot, and ctx.Err() when ctx
// ends.
func (w *Watcher) Next(ctx context.Context) ([]*Event, error) {
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
