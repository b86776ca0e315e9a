// Package fsm is the Raft state machine of Skiff: command encoding, the
// dispatch table, deterministic apply, snapshot/restore and the watch ring.
package fsm

import (
	"encoding/json"
	"fmt"

	"github.com/skiff-io/skiff/fsm/state"
)

// MessageType is the first byte of every Raft log entry Skiff writes.
type MessageType uint8

const (
	// MutateType carries one Mutation.
	MutateType MessageType = 1
	// BatchType carries a Batch applied atomically.
	BatchType MessageType = 2
	// MutationType carries one Mutation in a compact binary form (codec.go);
	// EncodeMutation makes it.
	MutationType MessageType = 3
	// DigestType asks every master to compute a digest of its state at
	// the entry's index (integrity.go); it changes no object.
	DigestType MessageType = 4

	// FramedType opens an entry in format 2, the checksummed frame that
	// wraps every entry this version writes (codec.go). Entries of format
	// 1 start with one of the types above and are still applied.
	FramedType MessageType = 0x80
)

// Op is what a mutation does.
type Op uint8

const (
	OpCreate Op = iota + 1
	OpUpdate
	OpDelete
	// OpUpdateStatus replaces only the top-level "status" field of the
	// stored object with Object (the status value).
	OpUpdateStatus
)

func (o Op) String() string {
	switch o {
	case OpCreate:
		return "create"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpUpdateStatus:
		return "status"
	}
	return fmt.Sprintf("op(%d)", o)
}

// Preconditions guard an update or delete. Zero values mean "no condition".
type Preconditions struct {
	UID             string `json:"uid,omitempty"`
	ResourceVersion uint64 `json:"rv,omitempty"`
}

// Mutation is one change to one object. UIDs and timestamps are chosen by
// the proposer, never inside Apply.
type Mutation struct {
	Op  Op        `json:"op"`
	Key state.Key `json:"key"`
	// UID of the object being created (create only).
	UID string `json:"uid,omitempty"`
	// Object is the full object JSON without resourceVersion (create,
	// update) or the status value (status).
	Object        json.RawMessage `json:"obj,omitempty"`
	Preconditions *Preconditions  `json:"pre,omitempty"`
	// Sealed replaces Object for an encrypted resource: the object sealed
	// by FSM.Seal (encryption.go). Apply opens it.
	Sealed []byte `json:"sealed,omitempty"`
}

// Batch is a list of mutations applied all-or-nothing.
type Batch struct {
	Mutations []Mutation `json:"m"`
}

// Encode makes a Raft log entry: the type byte and the JSON body, in the
// checksummed frame. With EncodeMutation (binary) and EncodeDigest it is
// the only way entries are made.
func Encode(t MessageType, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %d: %w", t, err)
	}
	out := make([]byte, 0, len(b)+2+frameTrailer)
	out = append(out, byte(FramedType), byte(t))
	return sealFrame(append(out, b...)), nil
}

// EncodeDigest makes a digest request entry (integrity.go).
func EncodeDigest() []byte {
	return sealFrame([]byte{byte(FramedType), byte(DigestType)})
}

// EncodeMutation encodes a single mutation in the binary form.
func EncodeMutation(m Mutation) ([]byte, error) {
	if len(m.Object) > 0 && !json.Valid(m.Object) {
		return nil, fmt.Errorf("encode mutation of %s: object is not valid JSON", m.Key)
	}
	b := make([]byte, 2, len(m.Object)+len(m.Key.Resource)+len(m.Key.Namespace)+len(m.Key.Name)+len(m.UID)+36)
	b[0], b[1] = byte(FramedType), byte(MutationType)
	return sealFrame(encodeMutationBinary(b, &m)), nil
}

// EncodeBatch encodes an atomic batch.
func EncodeBatch(b Batch) ([]byte, error) { return Encode(BatchType, b) }

// Reason classifies a business error decided inside Apply.
type Reason string

const (
	ReasonAlreadyExists Reason = "AlreadyExists"
	ReasonConflict      Reason = "Conflict"
	ReasonNotFound      Reason = "NotFound"
	ReasonInvalid       Reason = "Invalid"
)

// Error is a deterministic outcome of Apply that refused a mutation. It is
// returned as the Apply response (and through forwarding), never panicked.
type Error struct {
	Reason  Reason    `json:"reason"`
	Key     state.Key `json:"key"`
	Message string    `json:"message"`
	// Op is the position of the failing mutation within a batch.
	Op int `json:"op"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s: %s", e.Reason, e.Key, e.Message) }

// Result is the Apply response of a mutation or batch.
type Result struct {
	Index uint64 `json:"index"`
	// Objects are the objects after each mutation (for delete: the last
	// state, stamped with the delete index).
	Objects []*state.Object `json:"objects,omitempty"`
	Err     *Error          `json:"err,omitempty"`
}
