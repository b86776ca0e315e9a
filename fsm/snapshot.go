package fsm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"slices"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm/state"
)

// A snapshot stream (version 4) is a header line, then for each object in
// key order a record line followed by exactly Len bytes of object data and
// a newline, then a trailer line with the CRC-32C of every byte before it:
//
//	{"version":4,"index":I,"objects":N,"sealedWith":"key-000001"}
//	{"key":{...},"uid":"...","c":C,"m":M,"len":L,"sealed":true}
//	<L bytes>
//	{"crc32c":S}
//
// The objects of encrypted resources are sealed with the data key named in
// the header (encryption.go) and marked "sealed"; a stream with nothing
// sealed is written as version 3 (the same without those fields), which
// the previous release reads.
// The data is written as stored, byte for byte (re-encoding it as JSON would
// compact and escape it), so a restored state is identical to the one
// snapshotted. The object count lets Restore detect a stream cut short, the
// checksum a byte changed. Version 2 is the same without the trailer; it is
// still restored (a master upgraded in place opens its old snapshots).
const (
	snapshotVersion   = 4
	snapshotVersionV3 = 3
	snapshotVersionV2 = 2
)

// snapshotHeader opens a snapshot stream.
type snapshotHeader struct {
	Version int    `json:"version"`
	Index   uint64 `json:"index"`
	Objects uint64 `json:"objects"`
	// SealedWith names the data key that sealed the encrypted objects.
	SealedWith string `json:"sealedWith,omitempty"`
}

// snapshotObject is the record line before one object's data.
type snapshotObject struct {
	Key         state.Key `json:"key"`
	UID         string    `json:"uid,omitempty"`
	CreateIndex uint64    `json:"c"`
	ModifyIndex uint64    `json:"m"`
	Len         int64     `json:"len"`
	Sealed      bool      `json:"sealed,omitempty"`
}

// snapshotTrailer closes a version-3 stream.
type snapshotTrailer struct {
	CRC32C *uint32 `json:"crc32c"`
}

type fsmSnapshot struct {
	f    *FSM
	snap *state.Snapshot
}

// Snapshot captures the state; Persist streams it while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{f: f, snap: f.Read()}, nil
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	key, err := writeSnapshot(sink, s.snap, s.f.enc)
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	s.f.snapMu.Lock()
	s.f.lastSnapIndex, s.f.lastSnapKey = s.snap.Index(), key
	s.f.snapMu.Unlock()
	return nil
}

func (s *fsmSnapshot) Release() {}

// writeSnapshot streams snap, sealing the objects that e encrypts with the
// primary key of snap, and returns that key's name ("" if nothing was
// sealed: encryption off, or no key yet).
func writeSnapshot(sink io.Writer, snap *state.Snapshot, e *encryption) (string, error) {
	var n uint64
	snap.All(func(*state.Object) bool { n++; return true })
	hdr := snapshotHeader{Version: snapshotVersion, Index: snap.Index(), Objects: n}
	if e != nil {
		if p := primaryKey(snap); p != nil {
			hdr.SealedWith = p.Key.Name
		}
	}
	if hdr.SealedWith == "" {
		// Nothing sealed: version 3, which masters of the previous
		// release read too (a rolling upgrade may send them this one).
		hdr.Version = snapshotVersionV3
	}
	sum := crc32.New(castagnoli)
	w := bufio.NewWriterSize(io.MultiWriter(sink, sum), 1<<20)
	enc := json.NewEncoder(w)
	if err := enc.Encode(hdr); err != nil {
		return "", err
	}
	var err error
	snap.All(func(o *state.Object) bool {
		data, sealed := o.Data, false
		if hdr.SealedWith != "" && e.resources[o.Key.Resource] {
			if data, _, err = e.sealObject(snap, o.Key, o.Data); err != nil {
				return false
			}
			sealed = true
		}
		err = enc.Encode(snapshotObject{Key: o.Key, UID: o.UID, CreateIndex: o.CreateIndex, ModifyIndex: o.ModifyIndex,
			Len: int64(len(data)), Sealed: sealed})
		if err == nil {
			_, err = w.Write(data)
		}
		if err == nil {
			err = w.WriteByte('\n')
		}
		return err == nil
	})
	if err != nil {
		return "", err
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	crc := sum.Sum32()
	b, err := json.Marshal(snapshotTrailer{CRC32C: &crc})
	if err != nil {
		return "", err
	}
	_, err = sink.Write(append(b, '\n'))
	return hdr.SealedWith, err
}

// Restore replaces the state with a snapshot: it builds and checks a new
// store, swaps it in under the lock, then ends every open watch (they get
// ErrExpired and relist). On error the current state and watches are kept.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, hdr, err := readSnapshot(bufio.NewReaderSize(rc, 1<<20), f.enc)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.restoreMu.Lock()
	f.state.Store(st)
	f.ring.reset(hdr.Index)
	f.resetIntegrity()
	f.restoreMu.Unlock()
	// Raft restores the snapshot it stores: it is this master's latest.
	f.snapMu.Lock()
	f.lastSnapIndex, f.lastSnapKey = hdr.Index, hdr.SealedWith
	f.snapMu.Unlock()
	f.log.Info("restored snapshot", "index", hdr.Index, "objects", hdr.Objects)
	return nil
}

// readSnapshot builds a store from a snapshot stream, opening its sealed
// objects with the keys it holds (wrapped with e's root key).
func readSnapshot(br *bufio.Reader, e *encryption) (*state.Store, snapshotHeader, error) {
	r := &snapReader{r: br, sum: crc32.New(castagnoli)}
	var hdr snapshotHeader
	if err := r.record(&hdr); err != nil {
		return nil, hdr, fmt.Errorf("header: %w", err)
	}
	switch hdr.Version {
	case snapshotVersion, snapshotVersionV3, snapshotVersionV2:
	default:
		if hdr.Version > snapshotVersion {
			return nil, hdr, fmt.Errorf("snapshot format version %d is newer than this skiff reads (%d to %d): "+
				"it was written by a newer release; a downgrade across it is not supported, run that release again", hdr.Version, snapshotVersionV2, snapshotVersion)
		}
		return nil, hdr, fmt.Errorf("unsupported snapshot version %d", hdr.Version)
	}
	st := state.NewStore()
	txn := st.Write()
	defer txn.Abort()
	prev := ""
	// Sealed objects are opened once every key is in: the keys sort
	// after some of the objects they sealed.
	var sealed []*state.Object
	for i := uint64(0); i < hdr.Objects; i++ {
		var so snapshotObject
		if err := r.record(&so); err != nil {
			return nil, hdr, fmt.Errorf("object %d: %w", i, err)
		}
		data, err := r.data(so.Len)
		if err != nil {
			return nil, hdr, fmt.Errorf("object %d (%s): %w", i, so.Key, err)
		}
		o := state.NewObject(so.Key, so.UID, data, so.CreateIndex, so.ModifyIndex)
		if err := checkRestored(txn, o, prev, hdr.Index, so.Sealed); err != nil {
			return nil, hdr, fmt.Errorf("object %d (%s): %w", i, so.Key, err)
		}
		txn.Put(o)
		prev = o.ID
		if so.Sealed {
			sealed = append(sealed, o)
		}
	}
	if hdr.Version >= 3 {
		want := r.sum.Sum32()
		// A map, not snapshotTrailer: field names must match exactly.
		var tr map[string]uint32
		if err := r.record(&tr); err != nil {
			return nil, hdr, fmt.Errorf("trailer after %d objects: %w", hdr.Objects, err)
		}
		got, ok := tr["crc32c"]
		if !ok || len(tr) != 1 {
			return nil, hdr, fmt.Errorf("trailer holds no checksum: %w", ErrCorrupt)
		}
		if got != want {
			return nil, hdr, fmt.Errorf("snapshot at index %d: crc32c %08x, trailer says %08x: %w", hdr.Index, want, got, ErrCorrupt)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err == nil {
			return nil, hdr, fmt.Errorf("data after %d objects", hdr.Objects)
		}
		return nil, hdr, err
	}
	if err := checkKeyRecords(txn, e); err != nil {
		return nil, hdr, err
	}
	for _, o := range sealed {
		plain, err := e.openObject(txn, o.Key, o.Data)
		if err != nil {
			return nil, hdr, fmt.Errorf("object %s: %w", o.Key, err)
		}
		if !json.Valid(plain) || !isObject(plain) {
			return nil, hdr, fmt.Errorf("object %s: sealed data is not a JSON object", o.Key)
		}
		txn.Put(state.NewObject(o.Key, o.UID, plain, o.CreateIndex, o.ModifyIndex))
	}
	txn.SetIndex(hdr.Index)
	txn.Commit()
	return st, hdr, nil
}

// snapReader reads a snapshot stream and sums the bytes it consumed.
type snapReader struct {
	r   *bufio.Reader
	sum hash.Hash32
}

// record decodes one JSON line.
func (sr *snapReader) record(v any) error {
	line, err := sr.r.ReadSlice('\n')
	switch {
	case err == io.EOF:
		return io.ErrUnexpectedEOF
	case err == bufio.ErrBufferFull:
		return fmt.Errorf("record longer than %d bytes", sr.r.Size())
	case err != nil:
		return err
	}
	_, _ = sr.sum.Write(line) // a hash never fails
	return json.Unmarshal(line, v)
}

// data reads n bytes of object data and the newline after them. It grows
// the buffer as data arrives, so a corrupt length fails at the end of the
// stream instead of allocating it.
func (sr *snapReader) data(n int64) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("negative length %d", n)
	}
	const chunk = 1 << 20
	data := make([]byte, 0, min(n, chunk))
	for int64(len(data)) < n {
		k := int(min(n-int64(len(data)), chunk))
		data = slices.Grow(data, k)
		got, err := io.ReadFull(sr.r, data[len(data):len(data)+k])
		data = data[:len(data)+got]
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
	}
	switch b, err := sr.r.ReadByte(); {
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	case b != '\n':
		return nil, fmt.Errorf("object data does not end after its length %d", n)
	}
	_, _ = sr.sum.Write(data)
	_, _ = sr.sum.Write([]byte{'\n'})
	return data, nil
}

// checkKeyRecords refuses data keys that e's root key does not open: the
// log only holds keys wrapped with it (NewEncryptionKey), and with one that
// does not open, this master could neither apply the entries sealed with
// it nor persist its state (Persist seals with the newest key).
func checkKeyRecords(txn *state.WriteTxn, e *encryption) error {
	if e == nil {
		return nil
	}
	var err error
	txn.List(EncryptionKeysResource, "", "", func(o *state.Object) bool {
		_, err = e.dek(o)
		return err == nil
	})
	return err
}

// checkRestored refuses an object the log could not have produced.
func checkRestored(txn *state.WriteTxn, o *state.Object, prev string, index uint64, sealed bool) error {
	if msg := checkKey(o.Key); msg != "" {
		return errors.New(msg)
	}
	switch {
	case o.ID <= prev:
		return errors.New("objects out of key order or repeated")
	case strings.IndexByte(o.UID, 0) >= 0:
		return errors.New("uid holds a NUL byte")
	case o.UID != "" && txn.GetByUID(o.UID) != nil:
		return fmt.Errorf("uid %s held by two objects", o.UID)
	case o.CreateIndex == 0 || o.CreateIndex > o.ModifyIndex || o.ModifyIndex > index:
		return fmt.Errorf("indexes created %d, modified %d, snapshot %d", o.CreateIndex, o.ModifyIndex, index)
	case !sealed && (!json.Valid(o.Data) || !isObject(o.Data)):
		return errors.New("data is not a JSON object")
	}
	return nil
}

// WriteSnapshot streams snap in the snapshot format (what Persist writes,
// sealed alike), for a master that repairs its state from this one (Repair
// reads it).
func (f *FSM) WriteSnapshot(w io.Writer, snap *state.Snapshot) error {
	_, err := writeSnapshot(w, snap, f.enc)
	return err
}
