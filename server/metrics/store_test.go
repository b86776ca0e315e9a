package metrics

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

func openTestStore(t *testing.T, dir string, opts StoreOptions) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := OpenStore(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func appendSamples(t *testing.T, s *Store, lset labels.Labels, start time.Time, step time.Duration, values ...float64) {
	t.Helper()
	app := s.Appender(context.Background())
	for i, v := range values {
		if _, err := app.Append(0, lset, start.Add(time.Duration(i)*step).UnixMilli(), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

func instant(t *testing.T, a *API, q string, ts time.Time) map[string]float64 {
	t.Helper()
	vec, err := a.Instant(context.Background(), q, ts)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	out := map[string]float64{}
	for _, s := range vec {
		out[s.Metric.String()] = s.F
	}
	return out
}

// A store closed and opened again replays its WAL: the samples appended
// before (never compacted into a block) are queryable.
func TestStoreAppendQueryAndWALReplay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "metrics")
	s := openTestStore(t, dir, StoreOptions{})
	now := time.Now().Truncate(time.Second)
	lset := labels.FromStrings(labels.MetricName, "node_cpu_usage_seconds_total", "node", "n1")
	appendSamples(t, s, lset, now.Add(-time.Minute), 10*time.Second, 0, 1, 2, 3, 4, 5, 6)

	got := instant(t, NewAPI(s, APIOptions{}), `rate(node_cpu_usage_seconds_total[1m])`, now)
	if len(got) != 1 {
		t.Fatalf("rate: %v", got)
	}
	for _, v := range got {
		if v < 0.09 || v > 0.11 {
			t.Fatalf("rate = %v, want 0.1", v)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "wal")); err != nil {
		t.Fatalf("no WAL: %v", err)
	}

	s2 := openTestStore(t, dir, StoreOptions{})
	defer s2.Close()
	got = instant(t, NewAPI(s2, APIOptions{}), `node_cpu_usage_seconds_total{node="n1"}`, now)
	if v := got[`{__name__="node_cpu_usage_seconds_total", node="n1"}`]; v != 6 {
		t.Fatalf("after reopen: %v, want the last sample 6", got)
	}
}

// A store of another format version is refused, not rewritten.
func TestStoreRefusesOtherFormatVersion(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, versionFile), []byte("2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenStore(dir, StoreOptions{}); err == nil {
		s.Close()
		t.Fatal("opened a store of format version 2")
	}
}

// Retention by time: blocks wholly older than the retention are dropped
// when the head is compacted.
func TestStoreRetentionByTime(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, StoreOptions{Retention: 6 * time.Hour})
	defer s.Close()
	lset := labels.FromStrings(labels.MetricName, "m")
	now := time.Now()
	// Ten hours of samples, one a minute: the head spans more than its
	// compaction range, so Compact cuts blocks of the old part.
	old := now.Add(-10 * time.Hour)
	var values []float64
	for range 600 {
		values = append(values, 1)
	}
	appendSamples(t, s, lset, old, time.Minute, values...)
	if err := s.DB().Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(s.DB().Blocks()) == 0 {
		t.Fatal("no block cut")
	}
	minT := now.UnixMilli()
	for _, b := range s.DB().Blocks() {
		minT = min(minT, b.Meta().MinTime)
	}
	// Blocks are cut at 2h boundaries and dropped whole: the block holding
	// the cutoff stays, so allow one block and the head's margin past it.
	if cutoff := now.Add(-6*time.Hour - 3*time.Hour).UnixMilli(); minT < cutoff {
		t.Fatalf("oldest block starts %v before now, retention is 6h", now.Sub(time.UnixMilli(minT)))
	}
}

// Retention by size: with a limit smaller than one block, blocks are
// dropped oldest first.
func TestStoreRetentionBySize(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, StoreOptions{RetentionSize: 1})
	defer s.Close()
	now := time.Now()
	app := s.Appender(context.Background())
	for j := range 600 {
		for i := range 20 {
			lset := labels.FromStrings(labels.MetricName, "m", "i", string(rune('a'+i)))
			if _, err := app.Append(0, lset, now.Add(-10*time.Hour+time.Duration(j)*time.Minute).UnixMilli(), float64(j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(s.DB().Blocks()); n > 1 {
		t.Fatalf("%d blocks kept with a 1-byte size retention", n)
	}
}
