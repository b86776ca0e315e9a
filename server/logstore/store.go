package logstore

import (
	"bufio"
	"bytes"
	"context"
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
	"github.com/skiff-io/skiff/client/logrecord"
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

// walGrace: how long sealed WAL segments outlive their checkpoint (a
// variable for the crash test).
var walGrace = 30 * time.Second

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

	// ckMu serializes checkpoints; sealed (under it) lists the WAL
	// segments kept for walGrace.
	ckMu    sync.Mutex
	sealed  []sealedSegments
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
func (s *Store) Ingest(recs []logrecord.Record, raw [][]byte) (accepted, duplicates int, err error) {
	return s.ingest(recs, raw, true)
}

// ingest without dedup stores every record (the WAL replay's missing
// ones); the marks only rise.
func (s *Store) ingest(recs []logrecord.Record, raw [][]byte, dedup bool) (accepted, duplicates int, err error) {
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
		if dedup && ok && r.Offset <= mark {
			duplicates++
			continue
		}
		fresh[r.Source] = max(r.Offset, mark)
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
func rowFields(dst []logstorage.Field, r *logrecord.Record) []logstorage.Field {
	for _, name := range streamFields {
		dst = append(dst, logstorage.Field{Name: name, Value: r.Fields[name]})
	}
	dst = append(dst, logstorage.Field{Name: "_msg", Value: r.Msg})
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		if slices.Contains(streamFields, k) || k == logrecord.FieldSource || k == logrecord.FieldOffset {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst = append(dst, logstorage.Field{Name: k, Value: r.Fields[k]})
	}
	dst = append(dst,
		logstorage.Field{Name: logrecord.FieldSource, Value: r.Source},
		logstorage.Field{Name: logrecord.FieldOffset, Value: strconv.FormatInt(r.Offset, 10)})
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

// Checkpoint forces the rows of the WAL's open segment into the
// storage's files, persists the high-water marks and seals the segment;
// sealed segments are removed walGrace later (the storage's files then
// surely hold their rows: its own flush runs every second, and a
// checkpoint's flush may miss parts the storage is merging at that
// moment). Marks not advanced for longer than the retention are
// forgotten (their records are gone too), which bounds their memory.
func (s *Store) Checkpoint() error {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if s.wal.size > 0 {
		if err := s.wal.rotate(); err != nil {
			s.failed = err
			s.mu.Unlock()
			return err
		}
		s.rotated(s.wal.written)
		s.sealed = append(s.sealed, sealedSegments{before: s.wal.seq, at: time.Now()})
		days := s.days
		s.days = map[string]struct{}{}
		s.marks.prune(time.Now().Add(-s.opts.Retention).Unix())
		snapshot := s.marks.encode()
		s.mu.Unlock()
		// Ingests that appended to the sealed segment finish adding
		// their rows to the storage first.
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
		s.metrics.checkpoints.Inc()
	} else {
		s.mu.Unlock()
	}
	var cut uint64
	i := 0
	for ; i < len(s.sealed) && time.Since(s.sealed[i].at) >= walGrace; i++ {
		cut = s.sealed[i].before
	}
	if cut > 0 {
		if err := removeSegmentsBefore(s.wal.dir, cut); err != nil {
			return err
		}
		s.sealed = s.sealed[i:]
	}
	return nil
}

// sealedSegments: the segments before the sequence number were sealed
// (and flushed) at the time.
type sealedSegments struct {
	before uint64
	at     time.Time
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

// replay re-adds, segment by segment, the WAL's records the storage does
// not hold (by source and offset): those it had in memory only when the
// process died, whatever the persisted marks say (segments are kept for
// walGrace after the checkpoint that flushed them, so a row the storage
// had not yet written is still there). The marks rise to the WAL's
// records; then it checkpoints.
func (s *Store) replay(walDir string, segs []uint64) error {
	var added, present int
	for _, n := range segs {
		a, p, err := s.replaySegment(filepath.Join(walDir, walName(n)))
		if err != nil {
			return err
		}
		added, present = added+a, present+p
	}
	s.log.Info("log store replayed its WAL", "segments", len(segs), "records-added", added, "records-already-stored", present)
	s.mu.Lock()
	s.wal.size = max(s.wal.size, 1)
	s.days = allDays(s.storage)
	s.mu.Unlock()
	return s.Checkpoint()
}

func (s *Store) replaySegment(path string) (added, present int, err error) {
	var recs []logrecord.Record
	var raws [][]byte
	var minT, maxT int64 = 1<<63 - 1, -1 << 63
	sources := map[string]bool{}
	var dec logrecord.Decoder
	err = readSegment(path, func(payload []byte) error {
		sc := bufio.NewScanner(bytes.NewReader(payload))
		sc.Buffer(nil, maxDecompressedBytes)
		for sc.Scan() {
			r, err := dec.Decode(sc.Bytes())
			if err != nil {
				return fmt.Errorf("wal record: %w", err)
			}
			ts := r.Time.UnixNano()
			minT, maxT = min(minT, ts), max(maxT, ts)
			sources[r.Source] = true
			recs = append(recs, r)
			raws = append(raws, slices.Clone(sc.Bytes()))
		}
		return sc.Err()
	})
	if err != nil || len(recs) == 0 {
		return 0, 0, err
	}
	s.storage.DebugFlush()
	have := map[string]bool{}
	q, err := logstorage.ParseQuery("*")
	if err != nil {
		return 0, 0, err
	}
	q.AddTimeFilter(minT, maxT)
	q.AddPipeFields([]string{logrecord.FieldSource, logrecord.FieldOffset})
	var hmu sync.Mutex
	qctx := logstorage.NewQueryContext(context.Background(), &logstorage.QueryStats{}, []logstorage.TenantID{{}}, q, false, nil)
	err = s.storage.RunQuery(qctx, func(_ uint, db *logstorage.DataBlock) {
		src, off := db.GetColumnByName(logrecord.FieldSource), db.GetColumnByName(logrecord.FieldOffset)
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
		return 0, 0, fmt.Errorf("replay: look up stored records: %w", err)
	}
	now := time.Now().Unix()
	var batch []logrecord.Record
	var braws [][]byte
	for i, r := range recs {
		if have[r.Source+"\x00"+strconv.FormatInt(r.Offset, 10)] {
			present++
			continue
		}
		batch = append(batch, r)
		braws = append(braws, raws[i])
	}
	if len(batch) > 0 {
		if _, _, err := s.ingest(batch, braws, false); err != nil {
			return 0, 0, err
		}
	}
	s.mu.Lock()
	for _, r := range recs {
		if s.marks.getOr(r.Source) < r.Offset {
			s.marks.set(r.Source, r.Offset, now)
		}
	}
	s.mu.Unlock()
	return len(batch), present, nil
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
	// Closed: the storage wrote everything; the WAL is not needed.
	if err == nil {
		err = removeSegmentsBefore(s.wal.dir, s.wal.seq+1)
	}
	return err
}
