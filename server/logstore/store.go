package logstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the store's settings (edge-sized).
const (
	DefaultRetention = 7 * 24 * time.Hour
	DefaultMaxDisk   = 2 << 30
	// checkpointInterval and checkpointBytes: how often the storage's
	// fresh rows are forced to disk and the WAL emptied.
	checkpointInterval = 5 * time.Second
	checkpointBytes    = 32 << 20
	// formatVersion of the store's own files (hwm, wal); VictoriaLogs
	// versions its own parts.
	formatVersion = 1
)

// Options configure a Store; zero values take the defaults.
type Options struct {
	Retention time.Duration
	// MaxDisk bounds the storage's disk use: the oldest day partitions
	// are dropped beyond it (VictoriaLogs' MaxDiskSpaceUsageBytes).
	// Negative: no bound.
	MaxDisk    int64
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Store is one master's log store.
type Store struct {
	dir     string
	storage *logstorage.Storage
	log     *slog.Logger
	opts    Options

	// mu serializes ingestion: dedup, WAL append, storage add, marks.
	mu    sync.Mutex
	marks *marks
	wal   *wal
	// days the open WAL segment's rows fall in (partition names).
	days map[string]struct{}

	// addMu: ingests hold it shared from their WAL append until their
	// rows are in the storage; a checkpoint takes it to wait for those.
	addMu sync.RWMutex
	// failed: a WAL write or sync failed; ingestion stops (a restart
	// replays what reached the disk).
	failed error

	// Group commit: one fsync covers every append before it.
	syncMu   sync.Mutex
	syncCond *sync.Cond
	syncing  bool
	synced   int64

	// ckMu serializes checkpoints.
	ckMu    sync.Mutex
	kick    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	closed  bool
	metrics *storeMetrics
	// appended is closed and replaced each time rows are added (tail
	// followers wait on it).
	appendedMu sync.Mutex
	appended   chan struct{}
}

type storeMetrics struct {
	accepted, duplicates prometheus.Counter
	checkpoints          prometheus.Counter
	checkpointErrors     prometheus.Counter
}

func newStoreMetrics(reg prometheus.Registerer) *storeMetrics {
	m := &storeMetrics{
		accepted:         prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_logstore_records_accepted_total", Help: "Log records stored."}),
		duplicates:       prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_logstore_records_duplicate_total", Help: "Log records dropped as at or below their source's high-water mark."}),
		checkpoints:      prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_logstore_checkpoints_total", Help: "Checkpoints of the log store (rows forced to disk, WAL emptied)."}),
		checkpointErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_logstore_checkpoint_errors_total", Help: "Checkpoints of the log store that failed."}),
	}
	if reg != nil {
		reg.MustRegister(m.accepted, m.duplicates, m.checkpoints, m.checkpointErrors)
	}
	return m
}

var quietOnce sync.Once

// initLibrary prepares VictoriaMetrics' shared packages, which read
// their settings from Go's flag.CommandLine (skiff's own flags are
// pflag's): they refuse to run before that set is parsed, so it is
// parsed with no arguments (their defaults), and VictoriaLogs'
// informational lines (one per partition snapshot, merge...) are kept
// out of the master's log; its warnings and errors still print.
func initLibrary() {
	quietOnce.Do(func() {
		if !flag.CommandLine.Parsed() {
			_ = flag.CommandLine.Parse(nil)
		}
		if f := flag.Lookup("loggerLevel"); f != nil {
			_ = f.Value.Set("WARN")
		}
	})
}

// Open opens (or creates) the store in dir, replaying the WAL left by a
// crash without storing any record twice.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MaxDisk == 0 {
		opts.MaxDisk = DefaultMaxDisk
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	initLibrary()
	walDir := filepath.Join(dir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, fmt.Errorf("log store dir: %w", err)
	}
	cfg := &logstorage.StorageConfig{
		Retention:     opts.Retention,
		FlushInterval: time.Second,
	}
	if opts.MaxDisk > 0 {
		cfg.MaxDiskSpaceUsageBytes = opts.MaxDisk
	}
	s := &Store{
		dir:      dir,
		storage:  logstorage.MustOpenStorage(filepath.Join(dir, "data"), cfg),
		log:      opts.Logger.With("component", "logstore"),
		opts:     opts,
		days:     map[string]struct{}{},
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		metrics:  newStoreMetrics(opts.Registerer),
		appended: make(chan struct{}),
	}
	s.syncCond = sync.NewCond(&s.syncMu)
	var err error
	s.marks, err = loadMarks(s.marksPath())
	if err != nil {
		s.storage.MustClose()
		return nil, err
	}
	segs, err := walSegments(walDir)
	if err != nil {
		s.storage.MustClose()
		return nil, err
	}
	var last uint64
	if len(segs) > 0 {
		last = segs[len(segs)-1]
	}
	s.wal, err = openWAL(walDir, last)
	if err != nil {
		s.storage.MustClose()
		return nil, err
	}
	if len(segs) > 0 {
		if err := s.replay(walDir, segs); err != nil {
			_ = s.wal.close()
			s.storage.MustClose()
			return nil, err
		}
	}
	s.wg.Add(1)
	go s.checkpointLoop()
	return s, nil
}

func (s *Store) marksPath() string { return filepath.Join(s.dir, "hwm") }

// Ingest stores the records whose offset is above their source's
// high-water mark and returns once they are durable (in the fsynced WAL);
// the others are duplicates. Records of one source must come in offset
// order. raw, when not nil, holds each record's NDJSON line (written to
// the WAL as is).
func (s *Store) Ingest(recs []Record, raw [][]byte) (accepted, duplicates int, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, 0, errClosed
	}
	if s.failed != nil {
		s.mu.Unlock()
		return 0, 0, s.failed
	}
	now := time.Now().Unix()
	var payload bytes.Buffer
	// fresh: marks as they will be after this batch.
	fresh := map[string]int64{}
	take := make([]bool, len(recs))
	for i := range recs {
		r := &recs[i]
		mark, ok := fresh[r.Source]
		if !ok {
			mark, ok = s.marks.get(r.Source)
		}
		if ok && r.Offset <= mark {
			duplicates++
			continue
		}
		fresh[r.Source] = r.Offset
		take[i] = true
		accepted++
		if raw != nil {
			payload.Write(raw[i])
		} else {
			payload.Write(mustJSON(r))
		}
		payload.WriteByte('\n')
		s.days[r.Time.UTC().Format("20060102")] = struct{}{}
	}
	s.metrics.duplicates.Add(float64(duplicates))
	if accepted == 0 {
		s.mu.Unlock()
		return 0, duplicates, nil
	}
	pos, err := s.wal.append(payload.Bytes())
	if err != nil {
		s.failed = err
		s.mu.Unlock()
		return 0, 0, err
	}
	for src, off := range fresh {
		s.marks.set(src, off, now)
	}
	if s.wal.size >= checkpointBytes {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	s.addMu.RLock()
	s.mu.Unlock()

	// Outside the lock: the storage's tokenizing and the fsync run for
	// several requests at once.
	lr := logstorage.GetLogRows(nil, nil, nil, nil, "")
	fields := make([]logstorage.Field, 0, 16)
	for i := range recs {
		if take[i] {
			fields = rowFields(fields[:0], &recs[i])
			lr.MustAdd(logstorage.TenantID{}, recs[i].Time.UnixNano(), fields, len(streamFields))
		}
	}
	s.storage.MustAddRows(lr)
	logstorage.PutLogRows(lr)
	s.addMu.RUnlock()
	if err := s.syncWAL(pos); err != nil {
		s.mu.Lock()
		s.failed = err
		s.mu.Unlock()
		return 0, 0, err
	}
	s.metrics.accepted.Add(float64(accepted))
	s.appendedMu.Lock()
	close(s.appended)
	s.appended = make(chan struct{})
	s.appendedMu.Unlock()
	return accepted, duplicates, nil
}

// syncWAL returns once the WAL is synced at least up to pos: one fsync
// serves every append made before it started (group commit).
func (s *Store) syncWAL(pos int64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	for s.synced < pos {
		if s.syncing {
			s.syncCond.Wait()
			continue
		}
		s.syncing = true
		s.syncMu.Unlock()
		s.mu.Lock()
		f, target := s.wal.f, s.wal.written
		s.mu.Unlock()
		err := f.Sync()
		s.syncMu.Lock()
		s.syncing = false
		s.syncCond.Broadcast()
		switch {
		case err == nil:
			s.synced = max(s.synced, target)
		case errors.Is(err, os.ErrClosed):
			// Rotated meanwhile: the rotation synced it (and moved synced).
		default:
			return fmt.Errorf("sync wal: %w", err)
		}
	}
	return nil
}

// rotated records that a rotation synced everything written so far.
func (s *Store) rotated(written int64) {
	s.syncMu.Lock()
	s.synced = max(s.synced, written)
	s.syncCond.Broadcast()
	s.syncMu.Unlock()
}

// changed is closed at the next ingestion.
func (s *Store) changed() <-chan struct{} {
	s.appendedMu.Lock()
	defer s.appendedMu.Unlock()
	return s.appended
}

var errClosed = errors.New("log store is closed")

// rowFields makes a record's VictoriaLogs fields: the stream fields
// first (in streamFields order), then _msg, the other fields, source
// and offset.
func rowFields(dst []logstorage.Field, r *Record) []logstorage.Field {
	for _, name := range streamFields {
		dst = append(dst, logstorage.Field{Name: name, Value: r.Fields[name]})
	}
	dst = append(dst, logstorage.Field{Name: "_msg", Value: r.Msg})
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		if slices.Contains(streamFields, k) || k == FieldSource || k == FieldOffset {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst = append(dst, logstorage.Field{Name: k, Value: r.Fields[k]})
	}
	dst = append(dst,
		logstorage.Field{Name: FieldSource, Value: r.Source},
		logstorage.Field{Name: FieldOffset, Value: strconv.FormatInt(r.Offset, 10)})
	return dst
}

func (s *Store) checkpointLoop() {
	defer s.wg.Done()
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kick:
		}
		if err := s.Checkpoint(); err != nil {
			s.metrics.checkpointErrors.Inc()
			s.log.Error("log store checkpoint", "err", err)
		}
	}
}

// Checkpoint forces the rows of the sealed WAL segments into the
// storage's files, persists the high-water marks and removes those
// segments. Marks not advanced for longer than the retention are
// forgotten (their records are gone too), which bounds their memory.
func (s *Store) Checkpoint() error {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	s.mu.Lock()
	if s.closed || s.wal.size == 0 {
		s.mu.Unlock()
		return nil
	}
	if err := s.wal.rotate(); err != nil {
		s.failed = err
		s.mu.Unlock()
		return err
	}
	s.rotated(s.wal.written)
	keep := s.wal.seq
	days := s.days
	s.days = map[string]struct{}{}
	s.marks.prune(time.Now().Add(-s.opts.Retention).Unix())
	snapshot := s.marks.encode()
	s.mu.Unlock()
	// Ingests that appended to the sealed segments finish adding their
	// rows to the storage first.
	s.addMu.Lock()
	s.addMu.Unlock() //nolint:staticcheck // a barrier

	if err := s.flush(days); err != nil {
		// The next checkpoint flushes these days again.
		s.mu.Lock()
		for d := range days {
			s.days[d] = struct{}{}
		}
		s.mu.Unlock()
		return err
	}
	if err := writeFileAtomic(s.marksPath(), snapshot); err != nil {
		return err
	}
	if err := removeSegmentsBefore(s.wal.dir, keep); err != nil {
		return err
	}
	s.metrics.checkpoints.Inc()
	return nil
}

// flush writes the storage's buffered rows of the given days to its
// files, synced: VictoriaLogs' partition snapshot flushes the in-memory
// parts to files first; the snapshot itself (hard links) is dropped.
func (s *Store) flush(days map[string]struct{}) error {
	s.storage.DebugFlush()
	for day := range days {
		for _, p := range s.storage.PartitionSnapshotMustCreate(day) {
			if err := s.storage.PartitionSnapshotDelete(p); err != nil {
				return fmt.Errorf("drop the flush snapshot: %w", err)
			}
		}
	}
	return nil
}

// replay re-adds the WAL's records that are above the persisted marks and
// not already in the storage (it flushes on its own every second, so a
// crash may have left some on disk), then checkpoints.
func (s *Store) replay(walDir string, segs []uint64) error {
	type pending struct {
		rec Record
		raw []byte
	}
	var recs []pending
	var minT, maxT int64 = 1<<63 - 1, -1 << 63
	for _, n := range segs {
		err := readSegment(filepath.Join(walDir, walName(n)), func(payload []byte) error {
			sc := bufio.NewScanner(bytes.NewReader(payload))
			sc.Buffer(nil, maxBodyBytes)
			for sc.Scan() {
				var r Record
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					return fmt.Errorf("wal record: %w", err)
				}
				if m, ok := s.marks.get(r.Source); ok && r.Offset <= m {
					continue
				}
				ts := r.Time.UnixNano()
				minT, maxT = min(minT, ts), max(maxT, ts)
				recs = append(recs, pending{rec: r, raw: slices.Clone(sc.Bytes())})
			}
			return sc.Err()
		})
		if err != nil {
			return err
		}
	}
	if len(recs) > 0 {
		// What the storage already holds of them, by (source, offset).
		sources := map[string]bool{}
		for _, p := range recs {
			sources[p.rec.Source] = true
		}
		have := map[string]bool{}
		q, err := logstorage.ParseQuery("*")
		if err != nil {
			return err
		}
		q.AddTimeFilter(minT, maxT)
		q.AddPipeFields([]string{FieldSource, FieldOffset})
		var hmu sync.Mutex
		qctx := logstorage.NewQueryContext(context.Background(), &logstorage.QueryStats{}, []logstorage.TenantID{{}}, q, false, nil)
		err = s.storage.RunQuery(qctx, func(_ uint, db *logstorage.DataBlock) {
			src, off := db.GetColumnByName(FieldSource), db.GetColumnByName(FieldOffset)
			if src == nil || off == nil {
				return
			}
			hmu.Lock()
			defer hmu.Unlock()
			for i := range src.Values {
				if sources[src.Values[i]] {
					have[src.Values[i]+"\x00"+off.Values[i]] = true
				}
			}
		})
		if err != nil {
			return fmt.Errorf("replay: look up stored records: %w", err)
		}
		var batch []Record
		var raws [][]byte
		for _, p := range recs {
			if have[p.rec.Source+"\x00"+strconv.FormatInt(p.rec.Offset, 10)] {
				// Already stored: only the mark moves.
				s.marks.set(p.rec.Source, max(p.rec.Offset, s.marks.getOr(p.rec.Source)), time.Now().Unix())
				continue
			}
			batch = append(batch, p.rec)
			raws = append(raws, p.raw)
		}
		if len(batch) > 0 {
			if _, _, err := s.Ingest(batch, raws); err != nil {
				return err
			}
		}
		s.log.Info("log store recovered the WAL", "records", len(batch), "already-stored", len(recs)-len(batch))
	}
	// Make the replayed state the checkpoint: flush and drop old segments.
	s.mu.Lock()
	s.wal.size = max(s.wal.size, 1)
	s.mu.Unlock()
	s.days = allDays(s.storage)
	return s.Checkpoint()
}

// allDays names every partition of the storage.
func allDays(st *logstorage.Storage) map[string]struct{} {
	out := map[string]struct{}{}
	for _, p := range st.PartitionList() {
		out[p] = struct{}{}
	}
	return out
}

// Close checkpoints and closes the storage.
func (s *Store) Close() error {
	close(s.stop)
	s.wg.Wait()
	err := s.Checkpoint()
	s.mu.Lock()
	s.closed = true
	if cerr := s.wal.close(); err == nil {
		err = cerr
	}
	s.mu.Unlock()
	s.storage.MustClose()
	return err
}
