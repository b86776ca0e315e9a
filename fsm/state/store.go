package state

import (
	"fmt"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// Store is the in-memory state: a go-memdb database whose read snapshots are
// consistent and cheap.
type Store struct {
	db *memdb.MemDB
}

// NewStore returns an empty store.
func NewStore() *Store {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is static; an error here is a programming error.
		panic(fmt.Sprintf("state: invalid schema: %v", err))
	}
	return &Store{db: db}
}

// Snapshot returns a consistent read-only view of the store.
func (s *Store) Snapshot() *Snapshot {
	return &Snapshot{txn: s.db.Txn(false)}
}

// Write starts a write transaction. Only the FSM writes.
func (s *Store) Write() *WriteTxn {
	return &WriteTxn{Snapshot: Snapshot{txn: s.db.Txn(true)}}
}

// Snapshot is a read view at one applied index.
type Snapshot struct {
	txn *memdb.Txn
}

// Index is the Raft index of the last command applied in this view.
func (s *Snapshot) Index() uint64 {
	raw, err := s.txn.First(tableIndex, indexID, "objects")
	if err != nil {
		panic(fmt.Sprintf("state: index lookup: %v", err))
	}
	if raw == nil {
		return 0
	}
	return raw.(*indexEntry).Value
}

// Get returns the object at key, or nil.
func (s *Snapshot) Get(k Key) *Object {
	raw, err := s.txn.First(tableObjects, indexID, k.ID())
	if err != nil {
		panic(fmt.Sprintf("state: get %s: %v", k, err))
	}
	if raw == nil {
		return nil
	}
	return raw.(*Object)
}

// GetByUID returns the object with the given UID, or nil.
func (s *Snapshot) GetByUID(uid string) *Object {
	raw, err := s.txn.First(tableObjects, indexUID, uid)
	if err != nil {
		panic(fmt.Sprintf("state: get uid %s: %v", uid, err))
	}
	if raw == nil {
		return nil
	}
	return raw.(*Object)
}

// List calls fn for each object of resource (in namespace, or in all
// namespaces when namespace is ""), in key order, starting after the object
// ID after (exclusive; "" for the start). after need not be a stored ID:
// pagination continues from the last ID of the previous page even if that
// object was deleted since. fn returns false to stop.
func (s *Snapshot) List(resource, namespace, after string, fn func(*Object) bool) {
	prefix := resource + "\x00"
	if namespace != "" {
		prefix += namespace + "\x00"
	}
	var (
		it  memdb.ResultIterator
		err error
	)
	if after >= prefix {
		it, err = s.txn.LowerBound(tableObjects, indexID, after)
	} else {
		// after is before every key of the listing (or "").
		it, err = s.txn.Get(tableObjects, indexID+"_prefix", prefix)
	}
	if err != nil {
		panic(fmt.Sprintf("state: list %s: %v", prefix, err))
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		o := raw.(*Object)
		if !strings.HasPrefix(o.ID, prefix) {
			return
		}
		if o.ID == after {
			continue
		}
		if !fn(o) {
			return
		}
	}
}

// InNamespace calls fn for every object of every resource in namespace.
func (s *Snapshot) InNamespace(namespace string, fn func(*Object) bool) {
	it, err := s.txn.Get(tableObjects, indexNamespace, namespace)
	if err != nil {
		panic(fmt.Sprintf("state: namespace %s: %v", namespace, err))
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*Object)) {
			return
		}
	}
}

// All calls fn for every object in key order.
func (s *Snapshot) All(fn func(*Object) bool) {
	it, err := s.txn.Get(tableObjects, indexID)
	if err != nil {
		panic(fmt.Sprintf("state: all: %v", err))
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*Object)) {
			return
		}
	}
}

// Count returns the number of objects of resource (in namespace if set).
func (s *Snapshot) Count(resource, namespace string) int {
	n := 0
	s.List(resource, namespace, "", func(*Object) bool { n++; return true })
	return n
}

// WriteTxn is a write transaction; reads see its own writes.
type WriteTxn struct {
	Snapshot
}

// Put inserts or replaces an object.
func (w *WriteTxn) Put(o *Object) {
	if err := w.txn.Insert(tableObjects, o); err != nil {
		panic(fmt.Sprintf("state: put %s: %v", o.Key, err))
	}
}

// Delete removes an object.
func (w *WriteTxn) Delete(o *Object) {
	if err := w.txn.Delete(tableObjects, o); err != nil {
		panic(fmt.Sprintf("state: delete %s: %v", o.Key, err))
	}
}

// SetIndex records the applied index.
func (w *WriteTxn) SetIndex(idx uint64) {
	if err := w.txn.Insert(tableIndex, &indexEntry{Name: "objects", Value: idx}); err != nil {
		panic(fmt.Sprintf("state: set index: %v", err))
	}
}

// Commit makes the writes visible.
func (w *WriteTxn) Commit() { w.txn.Commit() }

// Abort drops the writes.
func (w *WriteTxn) Abort() { w.txn.Abort() }
