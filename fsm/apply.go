package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/skiff-io/skiff/fsm/state"
)

// applyFunc applies one decoded entry inside a write transaction and returns
// the result plus the watch events it produced.
type applyFunc func(f *FSM, txn *state.WriteTxn, index uint64, body []byte) (*Result, []*Event)

// dispatch is filled by registerCommand at init; it panics on duplicates.
var dispatch = map[MessageType]applyFunc{}

func registerCommand(t MessageType, fn applyFunc) {
	if _, ok := dispatch[t]; ok {
		panic(fmt.Sprintf("fsm: command %d registered twice", t))
	}
	dispatch[t] = fn
}

func init() {
	registerCommand(MutateType, applyMutate)
	registerCommand(BatchType, applyBatch)
	registerCommand(MutationType, applyMutationBinary)
	registerCommand(DigestType, applyDigest)
}

func applyMutate(f *FSM, txn *state.WriteTxn, index uint64, body []byte) (*Result, []*Event) {
	var m Mutation
	if err := json.Unmarshal(body, &m); err != nil {
		panic(fmt.Sprintf("fsm: undecodable mutation at index %d: %v", index, err))
	}
	return applyOne(f, txn, index, &m)
}

// applyOne applies a single mutation entry.
func applyOne(f *FSM, txn *state.WriteTxn, index uint64, m *Mutation) (*Result, []*Event) {
	obj, ev, ferr := f.mutate(txn, index, m)
	if ferr != nil {
		return &Result{Index: index, Err: ferr}, nil
	}
	return &Result{Index: index, Objects: []*state.Object{obj}}, []*Event{ev}
}

func applyBatch(f *FSM, txn *state.WriteTxn, index uint64, body []byte) (*Result, []*Event) {
	var b Batch
	if err := json.Unmarshal(body, &b); err != nil {
		panic(fmt.Sprintf("fsm: undecodable batch at index %d: %v", index, err))
	}
	res := &Result{Index: index}
	events := make([]*Event, 0, len(b.Mutations))
	for i := range b.Mutations {
		obj, ev, ferr := f.mutate(txn, index, &b.Mutations[i])
		if ferr != nil {
			ferr.Op = i
			// The caller aborts the transaction: nothing of the batch applies.
			return &Result{Index: index, Err: ferr}, nil
		}
		res.Objects = append(res.Objects, obj)
		events = append(events, ev)
	}
	return res, events
}

// mutate applies one mutation. It reads only txn, the mutation and the
// root key, so it is deterministic.
func (f *FSM) mutate(txn *state.WriteTxn, index uint64, m *Mutation) (*state.Object, *Event, *Error) {
	fail := func(r Reason, format string, args ...any) (*state.Object, *Event, *Error) {
		return nil, nil, &Error{Reason: r, Key: m.Key, Message: fmt.Sprintf(format, args...)}
	}
	if ferr := f.unseal(txn, m); ferr != nil {
		return nil, nil, ferr
	}
	if msg := checkKey(m.Key); msg != "" {
		return fail(ReasonInvalid, "%s", msg)
	}
	cur := txn.Get(m.Key)
	switch m.Op {
	case OpCreate:
		if !isObject(m.Object) {
			return fail(ReasonInvalid, "object is not a JSON object")
		}
		if strings.IndexByte(m.UID, 0) >= 0 {
			return fail(ReasonInvalid, "uid holds a NUL byte")
		}
		if cur != nil {
			return fail(ReasonAlreadyExists, "object already exists")
		}
		if m.UID != "" && txn.GetByUID(m.UID) != nil {
			return fail(ReasonAlreadyExists, "uid %s already in use", m.UID)
		}
		o := state.NewObject(m.Key, m.UID, m.Object, index, index)
		txn.Put(o)
		return o, &Event{Type: Added, Index: index, Object: o}, nil
	case OpUpdate, OpUpdateStatus, OpDelete:
		if cur == nil {
			return fail(ReasonNotFound, "object not found")
		}
		if p := m.Preconditions; p != nil {
			if p.UID != "" && p.UID != cur.UID {
				return fail(ReasonConflict, "Precondition failed: UID in precondition: %s, UID in object meta: %s", p.UID, cur.UID)
			}
			if p.ResourceVersion != 0 && p.ResourceVersion != cur.ModifyIndex {
				return fail(ReasonConflict, "the object has been modified; please apply your changes to the latest version and try again")
			}
		}
		if m.Op == OpDelete {
			txn.Delete(cur)
			gone := *cur
			gone.ModifyIndex = index
			return &gone, &Event{Type: Deleted, Index: index, Object: &gone, Prev: cur}, nil
		}
		data := []byte(m.Object)
		if m.Op == OpUpdate && !isObject(m.Object) {
			return fail(ReasonInvalid, "object is not a JSON object")
		}
		if m.Op == OpUpdateStatus {
			if len(m.Object) == 0 {
				return fail(ReasonInvalid, "status is missing")
			}
			merged, err := replaceStatus(cur.Data, m.Object)
			if err != nil {
				return fail(ReasonInvalid, "status update: %v", err)
			}
			data = merged
		}
		o := state.NewObject(m.Key, cur.UID, data, cur.CreateIndex, index)
		txn.Put(o)
		return o, &Event{Type: Modified, Index: index, Object: o, Prev: cur}, nil
	default:
		return fail(ReasonInvalid, "unknown operation %d", m.Op)
	}
}

// checkKey says why k cannot name an object, or "" if it can. The store
// joins the parts of a key with NUL bytes, so a part holding one could
// alias another key or leak into another namespace's listing.
func checkKey(k state.Key) string {
	switch {
	case k.Resource == "":
		return "resource is empty"
	case k.Name == "":
		return "name is empty"
	case strings.IndexByte(k.Resource, 0) >= 0 || strings.IndexByte(k.Namespace, 0) >= 0 || strings.IndexByte(k.Name, 0) >= 0:
		return "key holds a NUL byte"
	}
	return ""
}

// isObject reports whether b, known to be valid JSON (json.Unmarshal made
// it, or json.Valid checked it), is an object. Everything stored must be
// one: status updates and the API decode it as such.
func isObject(b json.RawMessage) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// replaceStatus returns data with its top-level "status" replaced. Map keys
// are marshalled in sorted order, so the result is deterministic.
func replaceStatus(data []byte, status json.RawMessage) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, err
	}
	if fields == nil {
		// "null": never stored since creates and updates must be objects,
		// but a nil map must not panic inside Apply.
		return nil, fmt.Errorf("stored object is not a JSON object")
	}
	if len(status) == 0 || string(status) == "null" {
		delete(fields, "status")
	} else {
		fields["status"] = status
	}
	return json.Marshal(fields)
}
