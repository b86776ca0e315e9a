package shipper

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/skiff-io/skiff/client/logrecord"

	"github.com/skiff-io/skiff/runtime/shim"
)

// fakeIngest is an in-process stand-in for a master's /logs/v1/ingest
// (unit tests only): it keeps records by the contract's rule (a record is
// stored only above its source's high-water mark) and counts what it
// dropped as duplicates.
type fakeIngest struct {
	srv  *httptest.Server
	down atomic.Bool

	mu         sync.Mutex
	hwm        map[string]int64
	records    []logrecord.Record
	duplicates int
	requests   int
}

func newFakeIngest(t *testing.T) *fakeIngest {
	f := &fakeIngest{hwm: map[string]int64{}}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIngest) addr() string { u, _ := url.Parse(f.srv.URL); return u.Host }

func (f *fakeIngest) serve(w http.ResponseWriter, r *http.Request) {
	if f.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if r.URL.Path != "/logs/v1/ingest" || r.Header.Get("Content-Type") != "application/x-ndjson" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	var recs []logrecord.Record
	for sc.Scan() {
		var rec logrecord.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		recs = append(recs, rec)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	acc, dup := 0, 0
	for _, rec := range recs {
		if rec.Offset <= f.hwm[rec.Source] {
			dup++
			continue
		}
		f.hwm[rec.Source] = rec.Offset
		f.records = append(f.records, rec)
		acc++
	}
	f.duplicates += dup
	fmt.Fprintf(w, `{"accepted":%d,"duplicates":%d}`, acc, dup)
}

func (f *fakeIngest) snapshot() ([]logrecord.Record, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]logrecord.Record(nil), f.records...), f.duplicates
}

// messages are the stored messages of container records (in arrival
// order) that have no dropped field.
func (f *fakeIngest) messages(container string) []string {
	recs, _ := f.snapshot()
	var out []string
	for _, r := range recs {
		if r.Fields[logrecord.FieldContainer] == container && r.Fields[logrecord.FieldDropped] == "" {
			out = append(out, r.Msg)
		}
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type env struct {
	dir, podLogs string
	masters      []*fakeIngest
	cfg          Config
}

func newEnv(t *testing.T, masters int) *env {
	e := &env{dir: t.TempDir()}
	e.podLogs = filepath.Join(e.dir, "pods")
	for i := 0; i < masters; i++ {
		e.masters = append(e.masters, newFakeIngest(t))
	}
	var addrs []string
	for _, m := range e.masters {
		addrs = append(addrs, m.addr())
	}
	tr := e.masters[0].srv.Client().Transport.(*http.Transport).Clone()
	e.cfg = Config{Node: "node-a", Cluster: "c1", Dir: filepath.Join(e.dir, "shipper"), PodLogDir: e.podLogs,
		Masters: func() []string { return addrs }, Transport: tr, ReadInterval: 50 * time.Millisecond, ScanInterval: 100 * time.Millisecond,
		PodLabels: func(ns, name, uid string) map[string]string { return map[string]string{"app": name} }}
	return e
}

// run starts a shipper; the returned func stops it (as a clean stop).
func (e *env) run(t *testing.T) (*Shipper, func()) {
	t.Helper()
	s, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return s, stop
}

// logger is a container's CRI log as the shim writes it.
func (e *env) logger(t *testing.T, pod, container string, attempt int, maxSize int64, maxFiles int) *shim.CRILogger {
	t.Helper()
	l, err := shim.NewCRILogger(e.logPath(pod, container, attempt), maxSize, maxFiles)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func (e *env) podDir(pod string) string { return filepath.Join(e.podLogs, "ns1_"+pod+"_uid-"+pod) }

func (e *env) logPath(pod, container string, attempt int) string {
	return filepath.Join(e.podDir(pod), container, strconv.Itoa(attempt)+".log")
}

func writeLines(t *testing.T, l *shim.CRILogger, from, to int) {
	t.Helper()
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "line %06d\n", i)
	}
	if err := l.CopyLines("stdout", strings.NewReader(b.String()), false, nil); err != nil {
		t.Fatal(err)
	}
}

func numbered(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("line %06d", i))
	}
	return out
}

func equalLines(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d (first got %q)", len(got), len(want), first(got))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("line %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// Lines are delivered to every master, in order, once, through rotation,
// with the contract's fields; a restart (with positions older than the
// spool, as after kill -9 between the two writes) ships nothing twice.
func TestShipToEveryMasterThroughRotationAndRestart(t *testing.T) {
	e := newEnv(t, 3)
	// The third master stays down: the spool keeps every record for it,
	// so the test can see that none was spooled twice.
	e.masters[2].down.Store(true)
	l := e.logger(t, "p1", "c1", 0, 16<<10, 5) // rotates every ~300 lines
	writeLines(t, l, 0, 500)
	_, stop := e.run(t)
	for _, m := range e.masters[:2] {
		waitFor(t, 10*time.Second, "500 lines at each master", func() bool { return len(m.messages("c1")) == 500 })
	}
	recs, _ := e.masters[0].snapshot()
	f := recs[0].Fields
	for k, want := range map[string]string{"kind": "container", "cluster": "c1", "node": "node-a", "namespace": "ns1", "pod": "p1",
		"pod_uid": "uid-p1", "container": "c1", "restart": "0", "stream": "stdout", "label.app": "p1"} {
		if f[k] != want {
			t.Errorf("field %s = %q, want %q (all: %v)", k, f[k], want, f)
		}
	}
	if recs[0].Source != "node-a/uid-p1/c1/0/stdout" {
		t.Errorf("source %q", recs[0].Source)
	}
	// Keep the positions of now, ship more, then put the old positions
	// back: the restart reads those lines again but ships none twice.
	old, err := os.ReadFile(filepath.Join(e.cfg.Dir, "positions.json"))
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, l, 500, 700)
	waitFor(t, 10*time.Second, "700 lines", func() bool { return len(e.masters[0].messages("c1")) == 700 })
	stop()
	if err := os.WriteFile(filepath.Join(e.cfg.Dir, "positions.json"), old, 0o600); err != nil {
		t.Fatal(err)
	}
	writeLines(t, l, 700, 1000)
	s, stop := e.run(t)
	for _, m := range e.masters[:2] {
		waitFor(t, 10*time.Second, "1000 lines at each master", func() bool { return len(m.messages("c1")) >= 1000 })
	}
	time.Sleep(300 * time.Millisecond) // anything sent twice would arrive now
	stop()
	payloads, _, err := s.spool.read(0, 1<<30, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range payloads {
		r, err := logrecord.Decode(p)
		if err != nil {
			t.Fatal(err)
		}
		k := r.Source + "@" + strconv.FormatInt(r.Offset, 10)
		if seen[k] {
			t.Fatalf("record %s spooled twice", k)
		}
		seen[k] = true
	}
	if len(seen) < 1000 {
		t.Fatalf("the spool holds %d records, want all 1000", len(seen))
	}
	for i, m := range e.masters[:2] {
		// Stored once each (a batch in flight at the stop may be sent
		// again: the master's high-water mark drops it).
		equalLines(t, m.messages("c1"), numbered(0, 1000))
		_, dup := m.snapshot()
		t.Logf("master %d: %d records sent again", i, dup)
	}
	var offs []int64
	for _, r := range func() []logrecord.Record { r, _ := e.masters[0].snapshot(); return r }() {
		offs = append(offs, r.Offset)
	}
	for i := 1; i < len(offs); i++ {
		if offs[i] <= offs[i-1] {
			t.Fatalf("offsets not increasing at %d: %d then %d", i, offs[i-1], offs[i])
		}
	}
}

// A master that is down does not hold up the others; it gets everything
// once it is back.
func TestMasterDownDoesNotStopOthers(t *testing.T) {
	e := newEnv(t, 2)
	e.masters[1].down.Store(true)
	l := e.logger(t, "p1", "c1", 0, 0, 0)
	writeLines(t, l, 0, 100)
	e.run(t)
	waitFor(t, 10*time.Second, "master 0 has every line", func() bool { return len(e.masters[0].messages("c1")) == 100 })
	if n := len(e.masters[1].messages("c1")); n != 0 {
		t.Fatalf("the down master stored %d", n)
	}
	e.masters[1].down.Store(false)
	waitFor(t, 40*time.Second, "master 1 has every line", func() bool { return len(e.masters[1].messages("c1")) == 100 })
	equalLines(t, e.masters[1].messages("c1"), numbered(0, 100))
}

// CRI partial entries are joined; a line longer than 64 KiB becomes
// records of at most 64 KiB marked partial (all but the last); invalid
// UTF-8 and binary are replaced, not fatal; a truncated file goes on.
func TestPartialLongBinaryAndTruncation(t *testing.T) {
	e := newEnv(t, 1)
	l := e.logger(t, "p1", "c1", 0, 1<<30, 1)
	long := bytes.Repeat([]byte("abcdefghij"), 1<<20) // 10 MiB, no newline until the end
	if err := l.CopyLines("stdout", io.MultiReader(bytes.NewReader(long), strings.NewReader("\nshort\n\xff\xfebin\x00ary\n")), false, nil); err != nil {
		t.Fatal(err)
	}
	e.run(t)
	waitFor(t, 20*time.Second, "the long line, short and binary", func() bool {
		m := e.masters[0].messages("c1")
		return len(m) > 0 && m[len(m)-1] == "\uFFFDbin\x00ary"
	})
	recs, _ := e.masters[0].snapshot()
	var joined strings.Builder
	pieces := 0
	for _, r := range recs {
		if r.Msg == "short" {
			break
		}
		pieces++
		if len(r.Msg) > maxRecord {
			t.Fatalf("record of %d bytes", len(r.Msg))
		}
		last := joined.Len()+len(r.Msg) == len(long)
		if (r.Fields[logrecord.FieldPartial] == "true") == last {
			t.Fatalf("piece %d: partial=%q, last=%v", pieces, r.Fields[logrecord.FieldPartial], last)
		}
		joined.WriteString(r.Msg)
	}
	if joined.String() != string(long) || pieces < len(long)/maxRecord {
		t.Fatalf("long line: %d pieces joined to %d bytes, want %d", pieces, joined.Len(), len(long))
	}
	// Truncation in place (maxFiles 1 truncates on rotation).
	if err := os.Truncate(e.logPath("p1", "c1", 0), 0); err != nil {
		t.Fatal(err)
	}
	l2 := e.logger(t, "p1", "c1", 0, 1<<30, 1)
	writeLines(t, l2, 0, 3)
	waitFor(t, 10*time.Second, "lines after truncation", func() bool {
		m := e.masters[0].messages("c1")
		return len(m) >= 3 && m[len(m)-1] == "line 000002"
	})
}

// With masters unreachable the spool fills to its bound, then drops the
// oldest records, counts them and says so in a record; what is left
// arrives once a master is back.
func TestSpoolBoundDropsOldestAndCounts(t *testing.T) {
	e := newEnv(t, 1)
	e.masters[0].down.Store(true)
	e.cfg.BufferSize = 128 << 10
	l := e.logger(t, "p1", "c1", 0, 1<<30, 1)
	s, _ := e.run(t)
	const n = 5000
	for i := 0; i < n; i += 500 {
		writeLines(t, l, i, i+500)
		time.Sleep(60 * time.Millisecond)
	}
	dropped := func() float64 {
		return testutil.ToFloat64(s.m.dropped.WithLabelValues(destName("master", e.masters[0].addr()), "spool_full"))
	}
	waitFor(t, 10*time.Second, "records read", func() bool { return testutil.ToFloat64(s.m.read) == n })
	waitFor(t, 10*time.Second, "drops counted", func() bool { return dropped() > 0 })
	if b := s.spool.bytes(); b > e.cfg.BufferSize+s.spool.segMax {
		t.Fatalf("spool holds %d bytes, bound %d", b, e.cfg.BufferSize)
	}
	e.masters[0].down.Store(false)
	var got []string
	waitFor(t, 30*time.Second, "the newest line", func() bool {
		got = e.masters[0].messages("c1")
		return len(got) > 0 && got[len(got)-1] == fmt.Sprintf("line %06d", n-1)
	})
	// Counted drops and delivered lines make up all lines (the dropped
	// records' own count may include the drop reports themselves).
	recs, _ := e.masters[0].snapshot()
	var reported int64
	for _, r := range recs {
		if d := r.Fields[logrecord.FieldDropped]; d != "" {
			v, _ := strconv.ParseInt(d, 10, 64)
			reported += v
		}
	}
	if reported == 0 {
		t.Fatal("no record reports the dropped lines")
	}
	if int(dropped())+len(got) < n || len(got) >= n {
		t.Fatalf("delivered %d + dropped %v, written %d", len(got), dropped(), n)
	}
	// The oldest went: what arrived is the tail of the numbers, in order.
	equalLines(t, got, numbered(n-len(got), n))
}

// A container writing as fast as it can is held to the rate limit (the
// excess dropped and counted) and does not delay a quiet one.
func TestRateLimitFairness(t *testing.T) {
	e := newEnv(t, 1)
	e.cfg.RateLimit, e.cfg.RateBurst = 200, 200
	noisy := e.logger(t, "noisy", "c1", 0, 1<<30, 1)
	quiet := e.logger(t, "quiet", "c2", 0, 1<<30, 1)
	s, _ := e.run(t)
	stopNoisy := make(chan struct{})
	noisyDone := make(chan int)
	go func() {
		i := 0
		for {
			select {
			case <-stopNoisy:
				noisyDone <- i
				return
			default:
			}
			writeLines(t, noisy, i, i+2000)
			i += 2000
		}
	}()
	for i := 0; i < 10; i++ {
		writeLines(t, quiet, i, i+1)
		start := time.Now()
		waitFor(t, 3*time.Second, "the quiet line", func() bool { return len(e.masters[0].messages("c2")) == i+1 })
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("quiet line %d took %s", i, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stopNoisy)
	written := <-noisyDone
	writeLines(t, noisy, written, written+1) // one more after a pause: reports the drops
	time.Sleep(1100 * time.Millisecond)
	writeLines(t, noisy, written+1, written+2)
	waitFor(t, 20*time.Second, "the noisy pod's last line read", func() bool { return testutil.ToFloat64(s.m.read) >= float64(written+2+10) })
	dropped := testutil.ToFloat64(s.m.dropped.WithLabelValues("all", "rate_limit"))
	if dropped == 0 {
		t.Fatalf("no drops counted; the noisy container wrote %d lines", written)
	}
	waitFor(t, 10*time.Second, "a dropped record", func() bool {
		recs, _ := e.masters[0].snapshot()
		for _, r := range recs {
			if r.Fields[logrecord.FieldDropped] != "" && r.Fields[logrecord.FieldPod] == "noisy" {
				return true
			}
		}
		return false
	})
	t.Logf("noisy wrote %d, %v dropped, %d shipped", written+2, dropped, len(e.masters[0].messages("c1")))
}

// A released pod directory is read to its end, then removed; a container
// that restarted has its old log finished.
func TestReleasedLogDirIsShippedThenRemoved(t *testing.T) {
	e := newEnv(t, 1)
	e.masters[0].down.Store(true) // nothing delivered: the spool has it
	l := e.logger(t, "p1", "c1", 0, 1<<30, 1)
	writeLines(t, l, 0, 50)
	s, stop := e.run(t)
	l.Close()
	writeLines(t, e.logger(t, "p1", "c1", 1, 1<<30, 1), 50, 60)
	s.ReleaseLogDir(e.podDir("p1"))
	waitFor(t, 10*time.Second, "the pod log dir removed", func() bool {
		_, err := os.Stat(e.podDir("p1"))
		return os.IsNotExist(err)
	})
	stop()
	e.masters[0].down.Store(false)
	e.run(t)
	waitFor(t, 30*time.Second, "every line after the directory is gone", func() bool { return len(e.masters[0].messages("c1")) == 60 })
	equalLines(t, e.masters[0].messages("c1"), numbered(0, 60))
}

// Own-log records the tap's full queue refused are counted and reported
// in a record with "dropped", as rate-limited container lines are.
func TestOwnLogsQueueFullCounted(t *testing.T) {
	e := newEnv(t, 1)
	tap := NewLogTap(logrecord.KindAgent)
	e.cfg.Taps = []*LogTap{tap}
	log := slogNew(tap)
	for i := 0; i < cap(tap.ch)+100; i++ {
		log.Info("before the shipper runs", "i", i)
	}
	if tap.Lost() != 100 {
		t.Fatalf("lost %d, want 100", tap.Lost())
	}
	e.run(t)
	waitFor(t, 10*time.Second, "the record of the 100 lost own-log records", func() bool {
		recs, _ := e.masters[0].snapshot()
		for _, r := range recs {
			if r.Fields[logrecord.FieldKind] == logrecord.KindAgent && r.Fields[logrecord.FieldDropped] == "100" {
				return true
			}
		}
		return false
	})
}

// The process's own log records ship as kind agent.
func TestOwnLogs(t *testing.T) {
	e := newEnv(t, 1)
	tap := NewLogTap(logrecord.KindAgent)
	e.cfg.Taps = []*LogTap{tap}
	e.run(t)
	log := slogNew(tap)
	log.Info("hello from the agent", "k", "v")
	waitFor(t, 10*time.Second, "the agent's record", func() bool {
		recs, _ := e.masters[0].snapshot()
		for _, r := range recs {
			if r.Fields[logrecord.FieldKind] == logrecord.KindAgent && strings.Contains(r.Msg, `msg="hello from the agent" k=v`) && r.Fields[logrecord.FieldNode] == "node-a" {
				return true
			}
		}
		return false
	})
}
