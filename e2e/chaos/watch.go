package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WEvent is one watch event as a watcher received it.
type WEvent struct {
	Type string
	Key  string
	RV   uint64
	Data string
	Node string
}

// Segment is a stretch of events a watcher received without a gap: it
// starts at a list's resourceVersion (From) and goes on through resumes
// from the last resourceVersion seen, on any master, until a 410 or the
// end. Every change with From < RV ≤ To must be among its events.
type Segment struct {
	From, To uint64
	Events   []WEvent
}

// Watcher follows the workload namespace's ConfigMaps, preferring its home
// master and resuming elsewhere when that master is down.
type Watcher struct {
	ID   int
	Home *Node
	env  *Env
	// Sleepy watchers sometimes pause between two watch requests.
	Sleepy bool

	mu        sync.Mutex
	segments  []*Segment
	cur       *Segment
	cursor    uint64
	view      map[string]listItem
	anomalies []string
	Expired   int // 410s received
	Relists   int
	Resumes   int
}

func (w *Watcher) anomaly(format string, args ...any) {
	w.mu.Lock()
	w.anomalies = append(w.anomalies, fmt.Sprintf("watcher %d: ", w.ID)+fmt.Sprintf(format, args...))
	w.mu.Unlock()
}

// Cursor is the last resourceVersion the watcher has seen.
func (w *Watcher) Cursor() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cursor
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context, rng *rand.Rand) {
	for ctx.Err() == nil {
		n := w.Home
		if !n.Running() || n.isPaused() || n.isRemoved() {
			n = w.env.Pick(rng)
		}
		if n == nil || n.isPaused() {
			idle(ctx)
			continue
		}
		w.mu.Lock()
		needList := w.cur == nil
		w.mu.Unlock()
		if needList && rng.IntN(2) == 0 {
			// Half the relists are watch-lists, as client-go's informers
			// do: the objects as ADDED events, then a bookmark.
			w.stream(ctx, n, rng)
			continue
		}
		if needList {
			items, rv, err := w.env.client.List(ctx, n.URL(), Namespace, "")
			if err != nil {
				idle(ctx)
				continue
			}
			w.mu.Lock()
			w.Relists++
			w.view = items
			w.cur = &Segment{From: rv, To: rv}
			w.cursor = rv
			w.mu.Unlock()
		}
		w.stream(ctx, n, rng)
		if w.Sleepy && rng.IntN(2) == 0 {
			// A client that goes away for a while and resumes from
			// where it was: by then the ring has moved on (410).
			t := time.NewTimer(4 * time.Second)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
	w.mu.Lock()
	if w.cur != nil {
		w.segments = append(w.segments, w.cur)
		w.cur = nil
	}
	w.mu.Unlock()
}

// stream runs one watch request from the cursor on n. Requests last a few
// seconds (timeoutSeconds), so watchers resume often, on their home master
// when it runs again.
func (w *Watcher) stream(ctx context.Context, n *Node, rng *rand.Rand) {
	w.mu.Lock()
	from := w.cursor
	initial := w.cur == nil
	w.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	path := fmt.Sprintf("%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=%d&resourceVersion=%d", cmPath(Namespace, ""), 2+rng.IntN(5), from)
	var initView map[string]listItem
	if initial {
		path = fmt.Sprintf("%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=%d&sendInitialEvents=true&resourceVersionMatch=NotOlderThan", cmPath(Namespace, ""), 2+rng.IntN(5))
		initView = map[string]listItem{}
	}
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, n.URL()+path, nil)
	if err != nil {
		return
	}
	resp, err := w.env.client.hc.Do(req)
	if err != nil {
		idle(ctx)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		idle(ctx)
		return
	}
	// A master that stops answering (paused, cut off) sends no bookmark:
	// give up on it after a while and resume elsewhere.
	const idleLimit = 8 * time.Second
	watchdog := time.AfterFunc(idleLimit, cancel)
	defer watchdog.Stop()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev metav1.WatchEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() == nil {
				w.mu.Lock()
				w.Resumes++
				w.mu.Unlock()
			}
			return
		}
		watchdog.Reset(idleLimit)
		if ev.Type == "ERROR" {
			var st metav1.Status
			_ = json.Unmarshal(ev.Object.Raw, &st)
			w.mu.Lock()
			if st.Code == http.StatusGone {
				w.Expired++
			} else {
				w.anomalies = append(w.anomalies, fmt.Sprintf("watcher %d: ERROR event from %s: %d %s %s", w.ID, n.Name, st.Code, st.Reason, st.Message))
			}
			// Either way the watch cannot resume: relist.
			if w.cur != nil {
				w.segments = append(w.segments, w.cur)
			}
			w.cur = nil
			w.mu.Unlock()
			return
		}
		var cm corev1.ConfigMap
		if err := json.Unmarshal(ev.Object.Raw, &cm); err != nil {
			w.anomaly("undecodable %s event from %s: %v", ev.Type, n.Name, err)
			return
		}
		rv, err := strconv.ParseUint(cm.ResourceVersion, 10, 64)
		if err != nil {
			w.anomaly("%s event from %s with resourceVersion %q", ev.Type, n.Name, cm.ResourceVersion)
			return
		}
		if initView != nil {
			// The initial events: the state at some index, then a
			// bookmark at that index.
			switch {
			case ev.Type == "ADDED":
				initView[cm.Name] = listItem{RV: rv, Data: cm.Data["v"]}
			case ev.Type == "BOOKMARK" && cm.Annotations[metav1.InitialEventsAnnotationKey] == "true":
				for k, it := range initView {
					if it.RV > rv {
						w.anomaly("initial event %s@%d from %s after the initial-events-end bookmark at %d", k, it.RV, n.Name, rv)
					}
				}
				w.mu.Lock()
				w.Relists++
				w.view = initView
				w.cur = &Segment{From: rv, To: rv}
				w.cursor = rv
				w.mu.Unlock()
				initView = nil
			case ev.Type == "BOOKMARK":
			default:
				w.anomaly("%s event %s@%d from %s among the initial events", ev.Type, cm.Name, rv, n.Name)
				return
			}
			continue
		}
		w.mu.Lock()
		switch ev.Type {
		case "BOOKMARK":
			if rv < w.cursor {
				w.anomalies = append(w.anomalies, fmt.Sprintf("watcher %d: bookmark %d from %s after %d: resourceVersion went backwards", w.ID, rv, n.Name, w.cursor))
			} else {
				w.cursor, w.cur.To = rv, rv
			}
		case "ADDED", "MODIFIED", "DELETED":
			e := WEvent{Type: ev.Type, Key: cm.Name, RV: rv, Data: cm.Data["v"], Node: n.Name}
			if rv <= w.cursor {
				what := "resourceVersion went backwards"
				for _, old := range w.cur.Events {
					if old.Key == e.Key && old.RV == e.RV {
						what = "duplicate event"
					}
				}
				w.anomalies = append(w.anomalies, fmt.Sprintf("watcher %d: %s %s@%d from %s after %d: %s", w.ID, e.Type, e.Key, e.RV, n.Name, w.cursor, what))
			} else {
				w.cur.Events = append(w.cur.Events, e)
				w.cursor, w.cur.To = rv, rv
				if ev.Type == "DELETED" {
					delete(w.view, e.Key)
				} else {
					w.view[e.Key] = listItem{RV: rv, Data: e.Data}
				}
			}
		default:
			w.anomalies = append(w.anomalies, fmt.Sprintf("watcher %d: unknown event type %q", w.ID, ev.Type))
		}
		w.mu.Unlock()
	}
}

// WatchReport is what the watch checker found.
type WatchReport struct {
	Missed, Duplicates, Backwards, Divergent, FinalMismatch, Other int
	Expired, Relists, Resumes                                      int
	Details                                                        []string
}

// Anomalies is the number of watch anomalies of every kind.
func (r *WatchReport) Anomalies() int {
	return r.Missed + r.Duplicates + r.Backwards + r.Divergent + r.FinalMismatch + r.Other
}

// CheckWatchers checks each watcher's segments against every change known
// (acknowledged writes in hist and events any watcher received), and each
// watcher's final view against the converged state final (at index
// finalRV).
func CheckWatchers(ws []*Watcher, hist []Op, final map[string]listItem, finalRV uint64) *WatchReport {
	rep := &WatchReport{}
	add := func(format string, args ...any) {
		if len(rep.Details) < 50 {
			rep.Details = append(rep.Details, fmt.Sprintf(format, args...))
		}
	}
	type change struct {
		key string
		rv  uint64
	}
	known := map[change]WEvent{}
	for _, op := range hist {
		if op.IsWrite() && op.Outcome == OK && op.RV != 0 {
			known[change{op.Key, op.RV}] = WEvent{Key: op.Key, RV: op.RV, Data: strconv.Itoa(op.Arg), Node: "client"}
		}
	}
	for _, w := range ws {
		for _, s := range w.segments {
			for _, e := range s.Events {
				c := change{e.Key, e.RV}
				if k, ok := known[c]; ok && k.Data != e.Data {
					rep.Divergent++
					add("watcher %d: %s@%d has value %q from %s, elsewhere %q (%s)", w.ID, e.Key, e.RV, e.Data, e.Node, k.Data, k.Node)
					continue
				}
				if _, ok := known[c]; !ok {
					known[c] = e
				}
			}
		}
	}
	for _, w := range ws {
		rep.Expired += w.Expired
		rep.Relists += w.Relists
		rep.Resumes += w.Resumes
		for _, a := range w.anomalies {
			switch {
			case containsWord(a, "duplicate event"):
				rep.Duplicates++
			case containsWord(a, "went backwards"):
				rep.Backwards++
			default:
				rep.Other++
			}
			add("%s", a)
		}
		for _, s := range w.segments {
			got := map[change]bool{}
			for _, e := range s.Events {
				got[change{e.Key, e.RV}] = true
			}
			for c := range known {
				if c.rv > s.From && c.rv <= s.To && !got[c] {
					rep.Missed++
					add("watcher %d: missed %s@%d in segment (%d, %d]", w.ID, c.key, c.rv, s.From, s.To)
				}
			}
		}
		w.mu.Lock()
		cursor, view := w.cursor, w.view
		w.mu.Unlock()
		if cursor < finalRV {
			rep.FinalMismatch++
			add("watcher %d: ended at %d, before the final state %d", w.ID, cursor, finalRV)
			continue
		}
		for k, v := range final {
			if view[k] != v {
				rep.FinalMismatch++
				add("watcher %d: final view %s = %+v, state has %+v", w.ID, k, view[k], v)
			}
		}
		for k, v := range view {
			if _, ok := final[k]; !ok {
				rep.FinalMismatch++
				add("watcher %d: final view has %s = %+v, state has none", w.ID, k, v)
			}
		}
	}
	return rep
}

func containsWord(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if s[i:i+len(w)] == w {
			return true
		}
	}
	return false
}
