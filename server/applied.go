package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-io/skiff/fsm"
)

// The applied mark, <data-dir>/raft/applied-index, records durably how far
// this master has applied the log, before it applies (so before it can
// serve) each run of entries: every entry Raft hands the FSM is committed,
// so the local log holds it and a restart can apply it again without a
// leader (replayApplied). Raft itself does not persist the commit index.
//
// The file holds two slots, written in turn so that a torn write leaves
// the other intact; each is
//
//	"SKAI" | format version (1) | 3 zero bytes | index (8, big-endian) | CRC-32C of the 16 bytes before | 4 zero bytes
//
// and the valid slot with the higher index counts.
const (
	appliedMarkFile    = "applied-index"
	appliedMarkVersion = 1
	appliedSlotSize    = 24
	appliedSlotStride  = 512
)

var appliedMagic = []byte("SKAI")

type appliedMark struct {
	mu    sync.Mutex
	f     *os.File
	next  int    // slot written next
	saved uint64 // highest index saved
}

// openAppliedMark opens (or creates) the mark and returns the index saved.
func openAppliedMark(path string) (*appliedMark, uint64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("applied mark: %w", err)
	}
	m := &appliedMark{f: f}
	for slot := range 2 {
		b := make([]byte, appliedSlotSize)
		if _, err := f.ReadAt(b, int64(slot*appliedSlotStride)); err != nil && !errors.Is(err, io.EOF) {
			_ = f.Close()
			return nil, 0, fmt.Errorf("applied mark %s: %w", path, err)
		}
		if idx, ok := decodeAppliedSlot(b); ok && idx >= m.saved {
			m.saved, m.next = idx, 1-slot
		}
	}
	return m, m.saved, nil
}

func decodeAppliedSlot(b []byte) (uint64, bool) {
	if string(b[:4]) != string(appliedMagic) || b[4] != appliedMarkVersion {
		return 0, false
	}
	if crc32.Checksum(b[:16], castagnoli) != binary.BigEndian.Uint32(b[16:]) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[8:]), true
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Save records index durably (write and fdatasync) if it is newer.
func (m *appliedMark) Save(index uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if index <= m.saved {
		return nil
	}
	b := make([]byte, appliedSlotSize)
	copy(b, appliedMagic)
	b[4] = appliedMarkVersion
	binary.BigEndian.PutUint64(b[8:], index)
	binary.BigEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	if _, err := m.f.WriteAt(b, int64(m.next*appliedSlotStride)); err != nil {
		return fmt.Errorf("applied mark: %w", err)
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("applied mark: %w", err)
	}
	m.saved, m.next = index, 1-m.next
	return nil
}

func (m *appliedMark) Close() error { return m.f.Close() }

// markingFSM is the FSM Raft drives: it saves the applied mark before
// each run of entries is applied.
type markingFSM struct {
	*fsm.FSM
	s *Server
}

func (m markingFSM) Apply(l *raft.Log) any { return m.ApplyBatch([]*raft.Log{l})[0] }

func (m markingFSM) ApplyBatch(logs []*raft.Log) []any {
	if n := len(logs); n > 0 {
		if err := m.s.mark.Save(logs[n-1].Index); err != nil {
			// Serving on could serve, after a restart, a state older
			// than served now: stop serving (servingError).
			if m.s.markErr.CompareAndSwap(nil, &err) {
				m.s.log.Error("cannot record the applied index: this master stops serving", "err", err)
			}
		}
	}
	start := time.Now()
	out := m.FSM.ApplyBatch(logs)
	m.s.cmetrics.fsmApply.Observe(time.Since(start).Seconds())
	m.s.cmetrics.fsmEntries.Add(float64(len(logs)))
	return out
}

// Snapshot times the snapshot's Persist (componentmetrics.go).
func (m markingFSM) Snapshot() (raft.FSMSnapshot, error) {
	snap, err := m.FSM.Snapshot()
	if err != nil {
		return nil, err
	}
	return timedSnapshot{FSMSnapshot: snap, h: m.s.cmetrics.snapshot}, nil
}
