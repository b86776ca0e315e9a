package fsm

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/skiff-io/skiff/fsm/state"
)

// The binary form of a single mutation (MutationType), the hot path of
// every write: decoding it is a few slice operations, where the JSON form
// (MutateType, still accepted) makes the decoder scan and copy the whole
// object. Layout, strings as uvarint length + bytes:
//
//	op byte | resource | namespace | name | uid | flags byte
//	[flags&1: precondition uid | uvarint precondition resourceVersion]
//	| object
const flagPreconditions = 1

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeMutationBinary appends the binary form of m to b.
func encodeMutationBinary(b []byte, m *Mutation) []byte {
	b = append(b, byte(m.Op))
	b = appendString(b, m.Key.Resource)
	b = appendString(b, m.Key.Namespace)
	b = appendString(b, m.Key.Name)
	b = appendString(b, m.UID)
	if p := m.Preconditions; p != nil {
		b = append(b, flagPreconditions)
		b = appendString(b, p.UID)
		b = binary.AppendUvarint(b, p.ResourceVersion)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Object)))
	return append(b, m.Object...)
}

var errShortMutation = errors.New("truncated mutation")

type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = errShortMutation
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShortMutation
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.err = errShortMutation
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

// decodeMutationBinary decodes body. The object is copied: the FSM keeps no
// reference to Raft's buffers.
func decodeMutationBinary(body []byte) (Mutation, error) {
	r := &reader{b: body}
	var m Mutation
	m.Op = Op(r.byte())
	m.Key = state.Key{Resource: string(r.bytes()), Namespace: string(r.bytes()), Name: string(r.bytes())}
	m.UID = string(r.bytes())
	if r.byte()&flagPreconditions != 0 {
		m.Preconditions = &Preconditions{UID: string(r.bytes()), ResourceVersion: r.uvarint()}
	}
	if obj := r.bytes(); len(obj) > 0 {
		m.Object = append([]byte(nil), obj...)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return m, r.err
}

func applyMutationBinary(f *FSM, txn *state.WriteTxn, index uint64, body []byte) (*Result, []*Event) {
	m, err := decodeMutationBinary(body)
	if err != nil {
		panic(fmt.Sprintf("fsm: undecodable mutation at index %d: %v", index, err))
	}
	if len(m.Object) > 0 && !json.Valid(m.Object) {
		return &Result{Index: index, Err: &Error{Reason: ReasonInvalid, Key: m.Key, Message: "object is not valid JSON"}}, nil
	}
	return applyOne(txn, index, &m)
}
