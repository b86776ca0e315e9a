package fsm

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/skiff-io/skiff/fsm/state"
)

// Entry formats. Format 1 (before checksums) is a type byte and a body.
// Format 2, written since, frames the format-1 bytes with a checksum:
//
//	FramedType | type | body | CRC-32C of every byte before it (4, big-endian)
//
// Apply checks the checksum before it decodes anything, so a byte changed
// on disk or on the wire is found instead of applied. The frame sits below
// every body encoding, so it covers whatever a body holds (an encrypted one
// included). One flipped bit cannot turn FramedType (0x80) into a format-1
// type (1-4), so a damaged frame is never taken for an unchecked entry.
const frameTrailer = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealFrame appends the checksum of b (which starts with FramedType).
func sealFrame(b []byte) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// ErrCorrupt marks an entry or snapshot whose bytes were damaged: they do
// not match their checksum, or an entry starts with no known format.
var ErrCorrupt = errors.New("corrupt data")

// decodeEntry returns an entry's type and body, checking the frame of a
// format-2 entry.
func decodeEntry(data []byte) (MessageType, []byte, error) {
	if len(data) == 0 {
		return 0, nil, errors.New("empty entry")
	}
	switch t := MessageType(data[0]); t {
	case MutateType, BatchType, MutationType: // format 1
		return t, data[1:], nil
	case FramedType:
	default:
		return 0, nil, fmt.Errorf("entry starts with %#x, no known format: %w", data[0], ErrCorrupt)
	}
	if len(data) < 2+frameTrailer {
		return 0, nil, fmt.Errorf("framed entry of %d bytes: %w", len(data), ErrCorrupt)
	}
	n := len(data) - frameTrailer
	if got, want := crc32.Checksum(data[:n], castagnoli), binary.BigEndian.Uint32(data[n:]); got != want {
		return 0, nil, fmt.Errorf("entry of %d bytes: crc32c %08x, trailer says %08x: %w", len(data), got, want, ErrCorrupt)
	}
	return MessageType(data[1]), data[2:n], nil
}

// The binary form of a single mutation (MutationType), the hot path of
// every write: decoding it is a few slice operations, where the JSON form
// (MutateType, still accepted) makes the decoder scan and copy the whole
// object. Layout, strings as uvarint length + bytes:
//
//	op byte | resource | namespace | name | uid | flags byte
//	[flags&1: precondition uid | uvarint precondition resourceVersion]
//	| object (flags&2: the sealed object, encryption.go)
const (
	flagPreconditions = 1
	flagSealed        = 2
)

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
	var flags byte
	if m.Preconditions != nil {
		flags |= flagPreconditions
	}
	obj := []byte(m.Object)
	if len(m.Sealed) > 0 {
		flags |= flagSealed
		obj = m.Sealed
	}
	b = append(b, flags)
	if p := m.Preconditions; p != nil {
		b = appendString(b, p.UID)
		b = binary.AppendUvarint(b, p.ResourceVersion)
	}
	b = binary.AppendUvarint(b, uint64(len(obj)))
	return append(b, obj...)
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
	flags := r.byte()
	if flags&flagPreconditions != 0 {
		m.Preconditions = &Preconditions{UID: string(r.bytes()), ResourceVersion: r.uvarint()}
	}
	if obj := r.bytes(); len(obj) > 0 {
		if flags&flagSealed != 0 {
			m.Sealed = append([]byte(nil), obj...)
		} else {
			m.Object = append([]byte(nil), obj...)
		}
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
	return applyOne(f, txn, index, &m)
}
