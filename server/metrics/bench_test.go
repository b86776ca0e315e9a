package metrics

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// benchPods is the number of pods written (SKIFF_BENCH_PODS, default
// 3000); each has the resource job's two series per container, one
// container each. Series are written straight into a Store (hollow nodes
// serve no stats over HTTP): the scraper is not measured here.
func benchPods(b *testing.B) int {
	if v, err := strconv.Atoi(os.Getenv("SKIFF_BENCH_PODS")); err == nil && v > 0 {
		return v
	}
	return 3000
}

// fillStore writes hours of 10 s samples for pods pods (CPU counter and
// memory gauge), then compacts the head into blocks.
func fillStore(b *testing.B, dir string, pods int, hours int) (*Store, int64, time.Time) {
	b.Helper()
	store, err := OpenStore(dir, StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var series []labels.Labels
	for i := range pods {
		node := "hollow-" + strconv.Itoa(i/30)
		pod := fmt.Sprintf("pod-%d", i)
		for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"} {
			series = append(series, labels.FromStrings(labels.MetricName, name, "container", "app", "instance", node+":10250",
				"job", "resource", "namespace", "bench", "node", node, "pod", pod))
		}
	}
	end := time.Now().Truncate(10 * time.Second)
	start := end.Add(-time.Duration(hours) * time.Hour)
	cpu := make([]float64, len(series))
	var n int64
	for ts := start; !ts.After(end); ts = ts.Add(10 * time.Second) {
		app := store.Appender(context.Background())
		for i, l := range series {
			var v float64
			if i%2 == 0 {
				cpu[i] += 10 * rand.Float64() * 0.2 // up to 0.2 core
				v = cpu[i]
			} else {
				v = float64(64<<20 + rand.IntN(1<<20)) // ~64 MiB, jittering
			}
			if _, err := app.Append(0, l, ts.UnixMilli(), v); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	if err := store.DB().Compact(context.Background()); err != nil {
		b.Fatal(err)
	}
	return store, n, end
}

// BenchmarkStoreBytesPerSample: bytes on disk per sample of the
// compacted blocks (chunks alone, and the whole block with its index), for
// kubelet resource series at 10 s (issue 19's goal: ≤ 2 B). Samples still
// in the head (the last hour or so) are not counted in either.
func BenchmarkStoreBytesPerSample(b *testing.B) {
	pods := benchPods(b)
	for b.Loop() {
		dir := b.TempDir()
		store, _, _ := fillStore(b, dir, pods, 4)
		var chunks, total, samples int64
		for _, blk := range store.DB().Blocks() {
			samples += int64(blk.Meta().Stats.NumSamples)
			bdir := blk.Dir()
			_ = filepath.Walk(bdir, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					total += fi.Size()
					if filepath.Base(filepath.Dir(p)) == "chunks" {
						chunks += fi.Size()
					}
				}
				return nil
			})
		}
		if samples == 0 {
			b.Fatal("nothing compacted")
		}
		b.ReportMetric(float64(chunks)/float64(samples), "chunk-B/sample")
		b.ReportMetric(float64(total)/float64(samples), "block-B/sample")
		b.ReportMetric(float64(samples), "samples-in-blocks")
		store.Close()
	}
}

// BenchmarkRangeQueryOnePod: a 1-hour range query (step 10 s) of one
// pod's CPU rate over a store of benchPods pods, through the query API's
// engine; reports the p99 of 200 queries of random pods (goal ≤ 50 ms).
func BenchmarkRangeQueryOnePod(b *testing.B) {
	pods := benchPods(b)
	store, _, end := fillStore(b, b.TempDir(), pods, 3)
	defer store.Close()
	api := NewAPI(store, APIOptions{})
	for b.Loop() {
		var took []time.Duration
		for range 200 {
			q := fmt.Sprintf(`rate(container_cpu_usage_seconds_total{namespace="bench",pod="pod-%d"}[1m])`, rand.IntN(pods))
			t0 := time.Now()
			qry, err := api.engine.NewRangeQuery(context.Background(), store.Queryable(), nil, q, end.Add(-time.Hour), end, 10*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			res := qry.Exec(context.Background())
			if res.Err != nil {
				b.Fatal(res.Err)
			}
			qry.Close()
			took = append(took, time.Since(t0))
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	}
}
