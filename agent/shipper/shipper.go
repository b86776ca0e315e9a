package shipper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/skiff-io/skiff/client/logrecord"
	"golang.org/x/time/rate"
)

// positionsVersion is the format of positions.json (STYLE habit 16).
const positionsVersion = 1

// Config configures a Shipper; cmd/skiff fills it from flags.
type Config struct {
	// Node and Cluster go into every record's fields.
	Node, Cluster string
	// Dir holds the shipper's spool and positions
	// (<data-dir>/agent/shipper).
	Dir string
	// PodLogDir is where the runtime writes container logs:
	// <PodLogDir>/<namespace>_<pod>_<uid>/<container>/<restart>.log.
	PodLogDir string
	// Masters lists the API addresses (host:port) of every master known
	// (client.Failover.Masters); each gets every record.
	Masters func() []string
	// Transport carries the node's TLS client credentials; it must verify
	// the masters' certificates whatever address it dials.
	Transport http.RoundTripper
	// Forwarders are extra destinations (Loki, Elasticsearch, OTLP,
	// syslog), each with its own cursor.
	Forwarders []Destination
	// BufferSize bounds the spool in bytes (256 MiB).
	BufferSize int64
	// RateLimit is each container's lines per second (0: no limit) and
	// RateBurst its burst (2 × RateLimit when 0).
	RateLimit float64
	RateBurst int
	// PodLabels gives a pod's labels (nil when it is not known).
	PodLabels func(namespace, name, uid string) map[string]string
	// Taps are the process's own log records (kind agent or server).
	Taps []*LogTap
	// ReadInterval: how often files are read and the spool committed
	// (200ms); ScanInterval: how often new logs are looked for (1s).
	ReadInterval, ScanInterval time.Duration
	Logger                     *slog.Logger
}

// Shipper tails the node's container logs into the spool and delivers
// the spool to every destination.
type Shipper struct {
	cfg   Config
	log   *slog.Logger
	spool *spool
	m     *metrics

	mu       sync.Mutex
	released map[string]bool // pod log dirs the kubelet let go → a scan has seen them since

	tails   map[string]*tail     // by log path
	states  map[string]tailState // finished or not yet reopened, by log path
	lastCP  time.Time
	cpDirty bool
	now     func() time.Time
}

type positionsFile struct {
	Version int                  `json:"version"`
	Seq     uint64               `json:"seq"` // the spool's next sequence when written
	Tails   map[string]tailState `json:"tails"`
}

// New opens the shipper's spool and positions.
func New(cfg Config) (*Shipper, error) {
	if cfg.BufferSize <= 0 {
		cfg.BufferSize = 256 << 20
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = int(2 * cfg.RateLimit)
	}
	if cfg.ReadInterval <= 0 {
		cfg.ReadInterval = 200 * time.Millisecond
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Masters == nil {
		cfg.Masters = func() []string { return nil }
	}
	sp, err := openSpool(filepath.Join(cfg.Dir, "spool"), cfg.BufferSize)
	if err != nil {
		return nil, fmt.Errorf("log shipper spool: %w", err)
	}
	s := &Shipper{cfg: cfg, log: cfg.Logger.With("component", "log-shipper"), spool: sp, released: map[string]bool{},
		tails: map[string]*tail{}, states: map[string]tailState{}, now: time.Now}
	s.m = newMetrics(func() float64 { return float64(sp.bytes()) })
	if err := s.loadPositions(); err != nil {
		return nil, err
	}
	return s, nil
}

// Collectors are the shipper's metrics (the kubelet's /metrics).
func (s *Shipper) Collectors() []prometheus.Collector { return s.m.collectors() }

// ReleaseLogDir is the kubelet's hand-over of a deleted pod's log
// directory: the shipper reads its files to their end into the spool,
// then removes the directory.
func (s *Shipper) ReleaseLogDir(dir string) {
	s.mu.Lock()
	if _, ok := s.released[filepath.Clean(dir)]; !ok {
		s.released[filepath.Clean(dir)] = false
	}
	s.mu.Unlock()
}

func (s *Shipper) positionsPath() string { return filepath.Join(s.cfg.Dir, "positions.json") }

func (s *Shipper) loadPositions() error {
	b, err := os.ReadFile(s.positionsPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var pf positionsFile
	if err := json.Unmarshal(b, &pf); err != nil {
		return fmt.Errorf("log shipper positions: %w", err)
	}
	if pf.Version != positionsVersion {
		return fmt.Errorf("log shipper positions: format version %d, this agent reads %d", pf.Version, positionsVersion)
	}
	s.states = pf.Tails
	if s.states == nil {
		s.states = map[string]tailState{}
	}
	// Records spooled after the positions were saved (a crash between
	// the two) raise the high-water marks, so they are not spooled twice.
	bySource := map[string]string{}
	for path, st := range s.states {
		bySource[st.Fields[logrecord.FieldNode]+"/"+st.Fields[logrecord.FieldPodUID]+"/"+st.Fields[logrecord.FieldContainer]+"/"+st.Fields[logrecord.FieldRestart]] = path
	}
	payloads, _, err := s.spool.read(pf.Seq, 1<<30, 1<<40)
	if err != nil {
		return err
	}
	for _, p := range payloads {
		r, err := logrecord.Decode(p)
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(r.Source, '/')
		if i < 0 {
			continue
		}
		path, ok := bySource[r.Source[:i]]
		if !ok {
			continue
		}
		st := s.states[path]
		if st.HWM == nil {
			st.HWM = map[string]int64{}
		}
		if stream := r.Source[i+1:]; r.Offset > st.HWM[stream] {
			st.HWM[stream] = r.Offset
		}
		s.states[path] = st
	}
	return nil
}

func (s *Shipper) savePositions() error {
	pf := positionsFile{Version: positionsVersion, Seq: s.spool.peekSeq(), Tails: make(map[string]tailState, len(s.states)+len(s.tails))}
	for p, st := range s.states {
		pf.Tails[p] = st
	}
	for p, t := range s.tails {
		pf.Tails[p] = t.checkpoint()
	}
	b, err := json.Marshal(pf)
	if err != nil {
		return err
	}
	return writeFileAtomic(s.positionsPath(), b)
}

// Run reads and delivers until ctx ends.
func (s *Shipper) Run(ctx context.Context) {
	s.log.Info("log shipper starting", "spool", s.spool.dir, "buffer", s.cfg.BufferSize, "rate-limit", s.cfg.RateLimit)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.destinations(ctx) }()
	s.pump(ctx)
	wg.Wait()
	if err := s.spool.close(); err != nil {
		s.log.Warn("close spool", "err", err)
	}
}

// pump reads every log into the spool and checkpoints the positions.
func (s *Shipper) pump(ctx context.Context) {
	tick := time.NewTicker(s.cfg.ReadInterval)
	defer tick.Stop()
	var lastScan time.Time
	var lastErr string
	for {
		if time.Since(lastScan) >= s.cfg.ScanInterval {
			s.scan()
			lastScan = time.Now()
		}
		err := s.readOnce(ctx)
		if err != nil && err.Error() != lastErr {
			s.log.Warn("log shipper", "err", err)
		}
		if err == nil && lastErr != "" {
			s.log.Info("log shipper recovered")
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			for _, t := range s.tails {
				t.close()
			}
			if err := s.savePositions(); err != nil {
				s.log.Warn("save log positions", "err", err)
			}
			return
		case <-tick.C:
		}
	}
}

// readOnce takes what every log and tap holds (rounds of a bounded number
// of lines per log, so a noisy container does not hold up a quiet one),
// commits it to the spool and checkpoints.
func (s *Shipper) readOnce(ctx context.Context) error {
	var recs []logrecord.Record
	deadline := time.Now().Add(s.cfg.ReadInterval / 2)
	paths := make([]string, 0, len(s.tails))
	for p := range s.tails {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var errs []error
	finished := false
	for more := true; more && ctx.Err() == nil; {
		more = false
		for _, p := range paths {
			t := s.tails[p]
			if t == nil {
				continue
			}
			eof, err := t.read(256, &recs)
			if err != nil {
				errs = append(errs, fmt.Errorf("read %s: %w", p, err))
				continue
			}
			if t.st.Done {
				s.states[p] = t.checkpoint()
				delete(s.tails, p)
				finished = true
				continue
			}
			if !eof {
				more = true
			}
		}
		if len(recs) > 4096 {
			if err := s.append(recs); err != nil {
				return err
			}
			recs = recs[:0]
		}
		if time.Now().After(deadline) {
			break
		}
	}
	for _, tap := range s.cfg.Taps {
		recs = tap.drain(recs, 4096)
		if lost := tap.Lost(); lost > tap.reported {
			n := lost - tap.reported
			tap.reported = lost
			s.m.dropped.WithLabelValues("all", "tap_full").Add(float64(n))
			recs = append(recs, droppedRecord("", 0, s.now(), map[string]string{logrecord.FieldKind: tap.kind}, n, "own-log queue full"))
		}
	}
	if err := s.append(recs); err != nil {
		return err
	}
	if err := s.commit(); err != nil {
		return err
	}
	if finished || (s.cpDirty && time.Since(s.lastCP) >= time.Second) {
		if err := s.savePositions(); err != nil {
			errs = append(errs, err)
		} else {
			s.lastCP, s.cpDirty = time.Now(), false
		}
	}
	if finished {
		s.removeReleased()
	}
	return errors.Join(errs...)
}

// append encodes records into the spool. Records of the process's own logs
// (no source yet) take the spool sequence as their offset.
func (s *Shipper) append(recs []logrecord.Record) error {
	for i := range recs {
		r := &recs[i]
		if r.Source == "" {
			r.Source = s.cfg.Node + "/" + r.Fields[logrecord.FieldKind] + "/" + s.spool.id
			r.Offset = int64(s.spool.peekSeq()) + 1
			r.Fields[logrecord.FieldCluster], r.Fields[logrecord.FieldNode] = s.cfg.Cluster, s.cfg.Node
		}
		b, err := r.Encode()
		if err != nil {
			return err
		}
		if _, err := s.spool.append(b); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.cpDirty = true
		if s.spool.bytes() > s.cfg.BufferSize {
			if err := s.commit(); err != nil {
				return err
			}
		}
	}
	return nil
}

// commit syncs the spool; what its bound dropped is counted and reported
// in a record of its own.
func (s *Shipper) commit() error {
	dropped, err := s.spool.commit()
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if len(dropped) == 0 {
		return nil
	}
	var most uint64
	for name, n := range dropped {
		s.m.dropped.WithLabelValues(name, "spool_full").Add(float64(n))
		most = max(most, n)
	}
	s.log.Warn("log spool full: dropped the oldest records", "records", most, "bound", s.cfg.BufferSize)
	r := droppedRecord("", 0, s.now(), map[string]string{logrecord.FieldKind: logrecord.KindAgent}, int64(most), "spool full")
	if err := s.append([]logrecord.Record{r}); err != nil {
		return err
	}
	_, err = s.spool.commit()
	return err
}

var podDirRE = regexp.MustCompile(`^([^_]+)_([^_]+)_([^_]+)$`)
var logFileRE = regexp.MustCompile(`^([0-9]+)\.log$`)

// scan opens new container logs, marks the logs of restarted containers
// and released pods to be finished, and forgets what left the disk.
func (s *Shipper) scan() {
	s.mu.Lock()
	released := make(map[string]bool, len(s.released))
	for d := range s.released {
		released[d] = true
	}
	s.mu.Unlock()
	pods, err := os.ReadDir(s.cfg.PodLogDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("list pod logs", "err", err)
	}
	for _, pd := range pods {
		m := podDirRE.FindStringSubmatch(pd.Name())
		if m == nil || !pd.IsDir() {
			continue
		}
		podDir := filepath.Join(s.cfg.PodLogDir, pd.Name())
		_, isReleased := released[podDir]
		containers, err := os.ReadDir(podDir)
		if err != nil {
			continue
		}
		var labels map[string]string
		labelsRead := false
		for _, cd := range containers {
			if !cd.IsDir() {
				continue
			}
			files, err := os.ReadDir(filepath.Join(podDir, cd.Name()))
			if err != nil {
				continue
			}
			newest := -1
			var attempts []int
			for _, f := range files {
				if fm := logFileRE.FindStringSubmatch(f.Name()); fm != nil {
					n, _ := strconv.Atoi(fm[1])
					attempts = append(attempts, n)
					newest = max(newest, n)
				}
			}
			for _, n := range attempts {
				path := filepath.Join(podDir, cd.Name(), strconv.Itoa(n)+".log")
				if t := s.tails[path]; t != nil {
					if isReleased || n < newest {
						t.finishing = true // the container has ended
					}
					continue
				}
				st, known := s.states[path]
				if known && st.Done {
					continue
				}
				if !labelsRead && s.cfg.PodLabels != nil && (!known || st.Fields == nil) {
					labels, labelsRead = s.cfg.PodLabels(m[1], m[2], m[3]), true
				}
				t := s.newTail(path, m[1], m[2], m[3], cd.Name(), n, labels, st, known)
				if err := t.open(); err != nil {
					continue
				}
				t.finishing = isReleased || n < newest
				s.tails[path] = t
				delete(s.states, path)
			}
		}
	}
	for path, t := range s.tails {
		if _, err := os.Stat(filepath.Dir(path)); errors.Is(err, os.ErrNotExist) {
			t.finishing = true // removed under us: read what the open file holds
		}
	}
	s.mu.Lock()
	for d := range released {
		if _, ok := s.released[d]; ok {
			s.released[d] = true // its files are tailed now
		}
	}
	s.mu.Unlock()
	s.removeReleased()
	for path := range s.states {
		if _, err := os.Stat(filepath.Dir(path)); errors.Is(err, os.ErrNotExist) {
			delete(s.states, path)
			s.cpDirty = true
		}
	}
}

func (s *Shipper) newTail(path, ns, pod, uid, container string, restart int, labels map[string]string, st tailState, known bool) *tail {
	fields := st.Fields
	if !known || fields == nil {
		fields = map[string]string{logrecord.FieldKind: logrecord.KindContainer, logrecord.FieldCluster: s.cfg.Cluster, logrecord.FieldNode: s.cfg.Node,
			logrecord.FieldNamespace: ns, logrecord.FieldPod: pod, logrecord.FieldPodUID: uid, logrecord.FieldContainer: container, logrecord.FieldRestart: strconv.Itoa(restart)}
		for k, v := range labels {
			fields[logrecord.LabelPrefix+k] = v
		}
	}
	t := &tail{path: path, source: s.cfg.Node + "/" + uid + "/" + container + "/" + strconv.Itoa(restart), fields: fields, st: st, m: s.m, now: s.now}
	if s.cfg.RateLimit > 0 {
		t.lim = rate.NewLimiter(rate.Limit(s.cfg.RateLimit), s.cfg.RateBurst)
	}
	return t
}

// removeReleased removes the released pod log directories whose logs are
// all in the spool.
func (s *Shipper) removeReleased() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for dir, scanned := range s.released {
		if !scanned {
			continue
		}
		busy := false
		for path := range s.tails {
			if strings.HasPrefix(path, dir+string(filepath.Separator)) {
				busy = true
				break
			}
		}
		if busy {
			continue
		}
		if s.cpDirty {
			// Positions first: a restart must not read the removed
			// files' successors as new.
			if err := s.savePositions(); err != nil {
				s.log.Warn("save log positions", "err", err)
				return
			}
			s.lastCP, s.cpDirty = time.Now(), false
		}
		if err := os.RemoveAll(dir); err != nil {
			s.log.Warn("remove shipped pod logs", "dir", dir, "err", err)
			continue
		}
		delete(s.released, dir)
		for path := range s.states {
			if strings.HasPrefix(path, dir+string(filepath.Separator)) {
				delete(s.states, path)
			}
		}
		s.cpDirty = true
	}
}
