package apiserver

import (
	"encoding/json"
	"strconv"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// eventCacheSize is how many recent watch event objects keep their decoded
// and encoded forms (a few seconds of changes at thousands per second).
const eventCacheSize = 1024

// eventCache shares the decoding and the JSON and protobuf encodings of a watch event's
// object among the watches that receive it: five watches of pods (the
// scheduler, the controllers, the kubelets) cost one decode and one encode
// per change instead of five, as kube-apiserver's watch cache serializes an
// event once for all its watchers. The zero value is ready to use.
type eventCache struct {
	mu    sync.Mutex
	items map[eventKey]*cachedEvent
	ring  []eventKey
	next  int
}

// eventKey names one object of one event: stored objects are immutable and
// shared, so the pointer identifies the version; rv is the event's index
// (the resourceVersion the watch sends, which for a deletion is not the
// object's own).
type eventKey struct {
	obj  *state.Object
	rv   uint64
	kind *registry.Kind
}

// cachedEvent is an event object decoded and encoded at most once. The
// decoded object is shared by every watch and must not be modified.
type cachedEvent struct {
	key        eventKey
	decodeOnce sync.Once
	obj        runtime.Object
	err        error
	encodeOnce sync.Once
	raw        []byte
	encErr     error
	protoOnce  sync.Once
	protoRaw   []byte
	protoErr   error
}

// get returns the cache entry of kind's object o sent at rv.
func (c *eventCache) get(kind *registry.Kind, o *state.Object, rv uint64) *cachedEvent {
	k := eventKey{o, rv, kind}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.items[k]; e != nil {
		return e
	}
	if c.items == nil {
		c.items = make(map[eventKey]*cachedEvent, eventCacheSize)
		c.ring = make([]eventKey, eventCacheSize)
	}
	if old := c.ring[c.next]; old.obj != nil {
		delete(c.items, old)
	}
	c.ring[c.next] = k
	c.next = (c.next + 1) % len(c.ring)
	e := &cachedEvent{key: k}
	c.items[k] = e
	return e
}

// decoded returns the object with its resourceVersion set to the event's.
func (e *cachedEvent) decoded() (runtime.Object, error) {
	e.decodeOnce.Do(func() {
		e.obj, e.err = e.key.kind.Decode(e.key.obj)
		if e.err == nil {
			mustAccessor(e.obj).SetResourceVersion(strconv.FormatUint(e.key.rv, 10))
		}
	})
	return e.obj, e.err
}

// encoded returns the object as JSON, or in the protobuf envelope when
// proto (the plain object form of a watch). Each is encoded at most once.
func (e *cachedEvent) encoded(proto bool) ([]byte, error) {
	if proto {
		e.protoOnce.Do(func() {
			obj, err := e.decoded()
			if err != nil {
				e.protoErr = err
				return
			}
			e.protoRaw, e.protoErr = protoEncode(obj)
		})
		return e.protoRaw, e.protoErr
	}
	e.encodeOnce.Do(func() {
		obj, err := e.decoded()
		if err != nil {
			e.encErr = err
			return
		}
		e.raw, e.encErr = json.Marshal(obj)
	})
	return e.raw, e.encErr
}
