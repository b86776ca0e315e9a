package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// minWatchTimeout is kube-apiserver's --min-request-timeout: a watch
// without timeoutSeconds lasts between one and two of these.
const minWatchTimeout = 30 * time.Minute

// handleWatch serves a watch: a chunked stream of newline-delimited JSON
// watch events, or of length-prefixed protobuf WatchEvents
// (application/vnd.kubernetes.protobuf;stream=watch) when negotiated.
//
//   - resourceVersion "" or "0" (without sendInitialEvents): the matching
//     objects of a snapshot at index N as ADDED, then the changes after N.
//   - resourceVersion N: the changes after N; 410 Expired as an ERROR event
//     when N has left the event ring.
//   - sendInitialEvents=true (resourceVersionMatch=NotOlderThan): the
//     snapshot as ADDED, then a BOOKMARK annotated
//     k8s.io/initial-events-end, then the changes.
//
// An object that stops matching the selectors is sent as DELETED, one
// that starts matching as ADDED.
func (s *APIServer) handleWatch(req *request) {
	opts, err := parseListOptions(req.r, req.kind, true)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	if req.info.Name != "" {
		opts.field = fields.AndSelectors(opts.field, fields.OneTermEqualSelector("metadata.name", req.info.Name))
	}
	out, err := negotiateOutput(req)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	timeout := time.Duration(float64(minWatchTimeout) * (1 + rand.Float64()))
	if opts.timeoutSeconds > 0 {
		timeout = time.Duration(opts.timeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(req.r.Context(), timeout)
	defer cancel()

	initial := opts.sendInitialEvents != nil && *opts.sendInitialEvents
	legacyInitial := opts.sendInitialEvents == nil && (opts.resourceVersion == "" || opts.resourceVersion == "0")
	var (
		snap  *state.Snapshot
		start uint64
	)
	replay := initial || legacyInitial
	if replay {
		// The state the initial events start from: any at or after this
		// read (a consistent one for resourceVersion ""). Its errors are
		// answered as statuses, before the stream starts.
		at, err := s.readAt(ctx, opts.resourceVersion)
		if err != nil {
			s.writeError(req.w, req.r, err)
			return
		}
		start = at.Index()
	} else {
		start, _ = parseRV(opts.resourceVersion)
		if opts.resourceVersion == "" {
			// sendInitialEvents=false without a resourceVersion: start
			// at the most recent state.
			cur, err := s.store.Read(ctx, true, 0)
			if err != nil {
				s.writeError(req.w, req.r, storeError(err))
				return
			}
			start = cur.Index()
		}
	}

	w := &watchWriter{s: s, req: req, out: out, headers: true, rc: http.NewResponseController(req.w), metrics: s.metrics.forWatch(req.kind)}
	if replay {
		w.stall = s.cfg.WatchStallTimeout
	}
	defer w.disarm()
	w.begin()
	if replay {
		// The user's turn to send initial events (limits.go), then the
		// snapshot they are read from: a watch waiting for its turn holds
		// no snapshot, and its client has its response headers.
		release, ok := s.limits.acquireReplay(ctx, req.user.Name)
		if !ok {
			return
		}
		w.turn = newReplayTurn(release)
		defer w.turn.done()
		if snap, err = s.store.Read(ctx, false, start); err != nil {
			w.fail(storeError(err))
			return
		}
		start = snap.Index()
	}
	filter := fsm.WatchFilter{Resource: req.kind.StorageResource(), Namespace: req.namespace()}
	if name, ok := opts.field.RequiresExactMatch("metadata.name"); ok {
		filter.Name = name
	}
	watcher, err := s.store.Watch(start, filter)
	if err != nil {
		w.expired(ctx, start, err)
		return
	}
	defer watcher.Stop()
	if snap != nil {
		var derr error
		// The plain object form of a watch without label selectors, nor
		// field selectors other than on the name and namespace, is sent
		// from the stored bytes: nothing is decoded or encoded, and the
		// watch holds nothing of the list but the snapshot, which shares
		// the state's immutable objects. Custom objects are decoded: their
		// schema's defaults apply on read.
		stored := w.out.kind == outputObject && !w.out.proto && opts.keyOnly() && !req.kind.Custom()
		emit := func(o *state.Object) bool {
			if stored {
				if !opts.matchesKey(o.Key) {
					return true
				}
				if ok, err := w.sendStored(watch.Added, o); ok {
					derr = err
					return derr == nil
				}
			}
			obj, err := req.kind.Decode(o)
			if err != nil {
				derr = err
				return false
			}
			if opts.matches(req.kind, obj) {
				derr = w.send(watch.Added, obj)
			}
			return derr == nil
		}
		w.buffer()
		defer w.unbuffer()
		// A watch of one name (a kubelet's own Node) replays that object
		// only, instead of decoding every object of the kind.
		if name, ok := opts.field.RequiresExactMatch("metadata.name"); ok && (req.namespace() != "" || !req.kind.Namespaced) {
			if o := snap.Get(req.kind.Key(req.namespace(), name)); o != nil {
				emit(o)
			}
		} else {
			snap.List(req.kind.StorageResource(), req.namespace(), "", emit)
		}
		if derr != nil {
			s.log.Debug("watch ended", "err", derr)
			return
		}
		if initial && opts.allowBookmarks {
			if err := w.bookmark(start, true); err != nil {
				return
			}
		}
		w.flush()
		w.turn.done()
		// The events that follow are written without a deadline: the
		// snapshot is released, and a watch stuck on them holds only its
		// goroutine until its timeout (it reads the shared event ring and
		// gets 410 Gone if it falls out of it). Setting and clearing an
		// HTTP/2 deadline costs two messages to the connection's goroutine
		// per event.
		w.stall = 0
	}
	s.watchLoop(ctx, w, watcher, opts)
}

// watchLoop streams the watcher's events until ctx ends, sending bookmarks
// when asked for.
func (s *APIServer) watchLoop(ctx context.Context, w *watchWriter, watcher *fsm.Watcher, opts *listOptions) {
	kind, ns := w.req.kind, w.req.namespace()
	resource := kind.StorageResource()
	// A watch of one name (fieldSelector metadata.name=N, or a watch of a
	// named object) skips other objects by key, without decoding them.
	name, oneName := opts.field.RequiresExactMatch("metadata.name")
	lastSent, lastBookmark := s.now(), s.now()
	for {
		waitCtx, cancel := ctx, context.CancelFunc(func() {})
		if opts.allowBookmarks {
			due := lastSent.Add(s.cfg.BookmarkIdle)
			if limit := lastBookmark.Add(s.cfg.BookmarkMax); limit.Before(due) {
				due = limit
			}
			waitCtx, cancel = context.WithTimeout(ctx, max(due.Sub(s.now()), time.Millisecond))
		}
		evs, err := watcher.Next(waitCtx)
		cancel()
		if err != nil {
			switch {
			case errors.Is(err, fsm.ErrExpired):
				w.expired(ctx, watcher.Cursor(), err)
				return
			case ctx.Err() != nil:
				return
			}
			// Idle: bookmark.
			if err := w.bookmark(watcher.Cursor(), false); err != nil {
				return
			}
			w.flush()
			lastSent, lastBookmark = s.now(), s.now()
			continue
		}
		sent := false
		for _, ev := range evs {
			o := ev.Object
			if o == nil || o.Key.Resource != resource || (ns != "" && o.Key.Namespace != ns) || (oneName && o.Key.Name != name) {
				continue
			}
			typ, ce, err := s.filterEvent(kind, ev, opts)
			if err != nil {
				s.log.Warn("watch: cannot decode event object", "key", o.Key, "err", err)
				continue
			}
			if ce == nil {
				continue
			}
			if err := w.sendCached(typ, ce); err != nil {
				return
			}
			sent = true
		}
		if sent {
			w.flush()
			lastSent = s.now()
		}
	}
}

// filterEvent applies the selectors to an event: the type to send and its
// object (decoded once for every watch, resourceVersion set to the
// event's), or nil when the watcher should not see it.
func (s *APIServer) filterEvent(kind *registry.Kind, ev *fsm.Event, opts *listOptions) (watch.EventType, *cachedEvent, error) {
	ce := s.events.get(kind, ev.Object, ev.Index)
	obj, err := ce.decoded()
	if err != nil {
		return "", nil, err
	}
	cur := opts.matches(kind, obj)
	switch ev.Type {
	case fsm.Added:
		if cur {
			return watch.Added, ce, nil
		}
	case fsm.Deleted:
		if cur {
			return watch.Deleted, ce, nil
		}
	case fsm.Modified:
		prev := cur
		var prevCE *cachedEvent
		if ev.Prev != nil && opts.hasSelectors() {
			prevCE = s.events.get(kind, ev.Prev, ev.Index)
			prevObj, err := prevCE.decoded()
			if err != nil {
				return "", nil, err
			}
			prev = opts.matches(kind, prevObj)
		}
		switch {
		case cur && prev:
			return watch.Modified, ce, nil
		case cur:
			return watch.Added, ce, nil
		case prev:
			// The last state the watcher could see.
			return watch.Deleted, prevCE, nil
		}
	}
	return "", nil, nil
}

// watchWriter writes watch events to the response.
type watchWriter struct {
	s       *APIServer
	req     *request
	out     output
	headers bool // the next Table event carries column definitions
	// The write deadline of the initial events: a client that takes
	// none of them for stall ends the watch (the stream is reset, the
	// connection closed), so an abandoned watch does not hold its
	// snapshot and goroutine for the rest of its timeout. armed is when it
	// was set (zero: not set); stall 0: no deadline.
	rc      *http.ResponseController
	stall   time.Duration
	armed   time.Time
	noDeadl bool // the writer has no deadlines (in-process transports)
	// storedPrefix is how the kind's stored objects begin (sendStored).
	storedPrefix []byte
	// buf buffers the initial events (nil otherwise), sent in turn.
	buf  *bufio.Writer
	turn *replayTurn
	// metrics counts the events sent (apiserver_watch_events_total).
	metrics watchEventMetrics
}

// arm sets the write deadline before a write, extending it once half of
// it has passed: a write that makes no progress for between stall/2 and
// stall fails.
func (w *watchWriter) arm() {
	if w.noDeadl || w.stall <= 0 {
		return
	}
	now := time.Now()
	if !w.armed.IsZero() && now.Sub(w.armed) < w.stall/2 {
		return
	}
	if err := w.rc.SetWriteDeadline(now.Add(w.stall)); err != nil {
		w.noDeadl = true
		return
	}
	w.armed = now
}

// disarm clears the write deadline once the writes of a batch are out:
// an HTTP/2 stream's deadline fires even when nothing is being written,
// and an HTTP/1 connection's would fail the next write after an idle
// spell.
func (w *watchWriter) disarm() {
	if w.armed.IsZero() {
		return
	}
	_ = w.rc.SetWriteDeadline(time.Time{})
	w.armed = time.Time{}
}

// begin sends the response headers: the stream is 200 even when its first
// event is an ERROR.
func (w *watchWriter) begin() {
	h := w.req.w.Header()
	if w.out.proto {
		h.Set("Content-Type", mediaProtobufWatch)
	} else {
		h.Set("Content-Type", mediaJSON)
	}
	h.Set("Cache-Control", "no-cache, private")
	h.Set("X-Content-Type-Options", "nosniff")
	w.arm()
	w.req.w.WriteHeader(http.StatusOK)
	w.flush()
}

// dst is where events are written: the response, through a buffer during
// the initial events.
func (w *watchWriter) dst() io.Writer {
	if w.buf != nil {
		return w.buf
	}
	return w.req.w
}

// replayBuffers buffer the initial events of watches: one write to the
// connection for many small events, not a few for each.
var replayBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// buffer starts buffering writes (the initial events).
func (w *watchWriter) buffer() {
	w.buf = replayBuffers.Get().(*bufio.Writer)
	if w.turn != nil {
		w.buf.Reset(progressWriter{w: w.req.w, turn: w.turn})
	} else {
		w.buf.Reset(w.req.w)
	}
}

// unbuffer writes out the buffered events and returns the buffer.
func (w *watchWriter) unbuffer() error {
	if w.buf == nil {
		return nil
	}
	w.arm()
	err := w.buf.Flush()
	w.buf.Reset(nil)
	replayBuffers.Put(w.buf)
	w.buf = nil
	return err
}

// flush sends what was written and clears the write deadline.
func (w *watchWriter) flush() {
	if err := w.unbuffer(); err != nil {
		w.disarm()
		return
	}
	if f, ok := w.req.w.(http.Flusher); ok {
		w.arm()
		f.Flush()
	}
	w.disarm()
}

// send writes one event in the negotiated form.
func (w *watchWriter) send(typ watch.EventType, obj runtime.Object) error {
	v := obj
	switch w.out.kind {
	case outputTable:
		m := mustAccessor(obj)
		t, err := w.s.toTable(w.req, w.out, []runtime.Object{obj}, metav1.ListMeta{ResourceVersion: m.GetResourceVersion()}, w.headers)
		if err != nil {
			return err
		}
		w.headers = false
		v = t
	case outputMetadata:
		v = partialMetadata(obj, w.out.metaVersion)
	}
	return w.write(typ, v)
}

// sendCached writes an event whose object is shared with other watches:
// the plain object form reuses its one encoding in the negotiated media
// type.
func (w *watchWriter) sendCached(typ watch.EventType, ce *cachedEvent) error {
	if w.out.kind != outputObject {
		obj, err := ce.decoded()
		if err != nil {
			return err
		}
		return w.send(typ, obj)
	}
	raw, err := ce.encoded(w.out.proto)
	if err != nil {
		return err
	}
	return w.writeRaw(typ, raw)
}

// write writes one event of obj, encoded for this watch.
func (w *watchWriter) write(typ watch.EventType, obj runtime.Object) error {
	var (
		raw []byte
		err error
	)
	if w.out.proto {
		raw, err = protoEncode(obj)
	} else {
		raw, err = json.Marshal(obj)
	}
	if err != nil {
		return err
	}
	return w.writeRaw(typ, raw)
}

// writeRaw writes {"type":TYPE,"object":RAW} and a newline: what
// json.Marshal makes of a metav1.WatchEvent, without a second pass over
// the object's bytes. In protobuf it writes a length-prefixed WatchEvent
// frame whose object is raw (wire.go).
func (w *watchWriter) writeRaw(typ watch.EventType, raw []byte) error {
	w.arm()
	if w.out.proto {
		var hb [64]byte
		dst := w.dst()
		if _, err := dst.Write(watchFrameHeader(hb[:0], string(typ), raw)); err != nil {
			return err
		}
		_, err := dst.Write(raw)
		w.metrics.sent(len(raw))
		return err
	}
	b := make([]byte, 0, len(raw)+32)
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","object":`...)
	b = append(b, raw...)
	b = append(b, "}\n"...)
	_, err := w.dst().Write(b)
	w.metrics.sent(len(b))
	return err
}

// sendStored writes an event of the stored object o as it is stored, with
// its resourceVersion put in: the bytes are the state's, shared by every
// watch and never copied. ok is false when o is not stored in the form
// expected (kind, apiVersion, then metadata, as Kind.Encode writes
// objects), and the caller sends it decoded.
func (w *watchWriter) sendStored(typ watch.EventType, o *state.Object) (ok bool, err error) {
	if w.storedPrefix == nil {
		gvk := w.req.kind.GVK
		w.storedPrefix = []byte(`{"kind":"` + gvk.Kind + `","apiVersion":"` + gvk.GroupVersion().String() + `","metadata":{`)
	}
	p := w.storedPrefix
	if !bytes.HasPrefix(o.Data, p) || len(o.Data) <= len(p) {
		return false, nil
	}
	w.arm()
	var hb [256]byte
	h := append(hb[:0], `{"type":"`...)
	h = append(h, typ...)
	h = append(h, `","object":`...)
	h = append(h, p...)
	h = append(h, `"resourceVersion":"`...)
	h = strconv.AppendUint(h, o.ModifyIndex, 10)
	h = append(h, '"')
	rest := o.Data[len(p):]
	if rest[0] != '}' {
		h = append(h, ',')
	}
	dst := w.dst()
	if _, err := dst.Write(h); err != nil {
		return true, err
	}
	if _, err := dst.Write(rest); err != nil {
		return true, err
	}
	_, err = dst.Write([]byte("}\n"))
	w.metrics.sent(len(h) + len(rest) + 2)
	return true, err
}

// bookmark sends a BOOKMARK at rv: an object of the kind with only its
// resourceVersion (and the initial-events-end annotation after a
// sendInitialEvents replay).
func (w *watchWriter) bookmark(rv uint64, initialEnd bool) error {
	obj := w.req.kind.New()
	m := mustAccessor(obj)
	m.SetResourceVersion(strconv.FormatUint(rv, 10))
	if initialEnd {
		m.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	if w.out.kind == outputTable {
		return w.write(watch.Bookmark, &metav1.Table{
			TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: w.out.metaAPIVersion()},
			ListMeta: metav1.ListMeta{ResourceVersion: m.GetResourceVersion()},
			Rows:     []metav1.TableRow{},
		})
	}
	if w.out.kind == outputMetadata {
		return w.write(watch.Bookmark, partialMetadata(obj, w.out.metaVersion))
	}
	return w.write(watch.Bookmark, obj)
}

// expired ends the watch with an ERROR event holding 410 Expired.
func (w *watchWriter) expired(ctx context.Context, rv uint64, cause error) {
	cur := uint64(0)
	if snap, err := w.s.store.Read(ctx, false, 0); err == nil {
		cur = snap.Index()
	}
	if errors.Is(cause, fsm.ErrExpired) {
		w.fail(tooOldResourceVersion(rv, cur))
	} else {
		w.fail(apierrors.NewInternalError(cause))
	}
}

// fail ends the watch with an ERROR event holding err's Status.
func (w *watchWriter) fail(err error) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		st = apierrors.NewInternalError(err)
	}
	status := st.Status()
	status.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	_ = w.write(watch.Error, &status)
	w.flush()
}
