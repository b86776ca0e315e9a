package bench

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// BenchmarkLogStore: one master's log store through its HTTPS API.
// Ingest: SKIFF_BENCH_LOG_LINES lines (default 10,000,000) of 200 bytes
// from 200 pods in 20 namespaces, spread over the last 6 hours, posted
// by 4 concurrent shippers in gzip'd NDJSON batches of 5,000 records
// (as the agents' shippers send them) with the master's own credentials.
// Then bytes on disk per line, and search latency: a rare word over
// everything, and one namespace+pod over the last hour (limit 100).
func BenchmarkLogStore(b *testing.B) {
	total := 10_000_000
	if v := os.Getenv("SKIFF_BENCH_LOG_LINES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("SKIFF_BENCH_LOG_LINES: %v", err)
		}
		total = n
	}
	c := testutil.StartCluster(b, 1)
	m := c.Masters[0]
	hc := c.Admin
	const (
		workers   = 4
		pods      = 200
		batch     = 5000
		lineBytes = 200
		span      = 6 * time.Hour
	)
	start := time.Now().Add(-span)
	perWorker := total / workers
	var posted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	t0 := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var raw, gz bytes.Buffer
			offsets := map[int]int64{}
			for done := 0; done < perWorker; {
				raw.Reset()
				n := min(batch, perWorker-done)
				for j := 0; j < n; j++ {
					k := done + j
					pod := w + workers*(k%(pods/workers))
					offsets[pod]++
					ts := start.Add(time.Duration(float64(span) * float64(k) / float64(perWorker)))
					msg := benchLogLine(rng, k, w)
					line, _ := json.Marshal(map[string]any{
						"source": fmt.Sprintf("bench/pod-%d/app/0", pod), "offset": offsets[pod],
						"time": ts.Format(time.RFC3339Nano), "msg": msg,
						"fields": map[string]string{"kind": "container", "node": "m1", "namespace": fmt.Sprintf("ns-%d", pod%20),
							"pod": fmt.Sprintf("pod-%d", pod), "container": "app", "stream": "stdout", "restart": "0"},
					})
					raw.Write(line)
					raw.WriteByte('\n')
				}
				gz.Reset()
				zw := gzip.NewWriter(&gz)
				_, _ = zw.Write(raw.Bytes())
				_ = zw.Close()
				req, _ := http.NewRequest(http.MethodPost, m.URL()+"/logs/v1/ingest", bytes.NewReader(gz.Bytes()))
				req.Header.Set("Content-Type", "application/x-ndjson")
				req.Header.Set("Content-Encoding", "gzip")
				resp, err := hc.Do(req)
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("ingest: %d %s", resp.StatusCode, body)
					return
				}
				done += n
				posted.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	elapsed := time.Since(t0)
	lines := posted.Load()
	b.ReportMetric(float64(lines)/elapsed.Seconds(), "lines/s")
	b.Logf("ingest: %d lines of %d bytes in %v: %.0f lines/s", lines, lineBytes, elapsed.Round(time.Millisecond), float64(lines)/elapsed.Seconds())

	// Disk: the storage after its checkpoint has written everything.
	dataDir := filepath.Join(m.DataDir, "logs", "data")
	var size int64
	testutil.WaitFor(b, 2*time.Minute, "the log store's size to settle", func() error {
		prev := size
		size = dirSize(dataDir)
		if size == 0 || size != prev {
			return fmt.Errorf("size %d (was %d)", size, prev)
		}
		return nil
	})
	perLine := float64(size) / float64(lines)
	b.ReportMetric(perLine, "disk-bytes/line")
	b.ReportMetric(100*perLine/lineBytes, "disk-%-of-raw")
	b.Logf("disk: %d bytes, %.1f bytes/line, %.1f%% of the %d-byte lines", size, perLine, 100*perLine/lineBytes, lineBytes)

	query := func(v url.Values) (time.Duration, int) {
		t := time.Now()
		resp, err := hc.Get(m.URL() + "/logs/v1/query?" + v.Encode())
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("query %v: %d %s", v, resp.StatusCode, body)
		}
		return time.Since(t), bytes.Count(body, []byte("\n"))
	}
	const runs = 30
	for _, q := range []struct {
		name string
		v    url.Values
	}{
		{"rare-word", url.Values{"query": {"zanzibar"}}},
		{"ns-pod-last-hour", url.Values{"namespace": {"ns-7"}, "pod": {"pod-7"}, "since": {"1h"}, "limit": {"100"}}},
	} {
		var lat []time.Duration
		var n int
		for i := 0; i < runs; i++ {
			d, rows := query(q.v)
			lat = append(lat, d)
			n = rows
		}
		b.ReportMetric(ms(percentile(lat, 0.5)), q.name+"-p50-ms")
		b.ReportMetric(ms(percentile(lat, 0.99)), q.name+"-p99-ms")
		b.Logf("%s over %d lines: %d results, p50 %.1f ms, p99 %.1f ms (%d runs)", q.name, lines, n, ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), runs)
	}
}

var (
	benchWords = []string{"GET", "POST", "PUT", "DELETE"}
	benchPaths = []string{"/api/v1/items", "/api/v1/users", "/healthz", "/api/v1/orders", "/static/app.js", "/api/v1/cart"}
	benchUsers = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
)

// benchLogLine is a 200-byte access-log-like line with request ids,
// numbers and durations (a rare word once in 1,000,000 lines).
func benchLogLine(rng *rand.Rand, k, w int) string {
	word := ""
	if (k+w*7919)%1_000_000 == 4242 {
		word = "zanzibar "
	}
	s := fmt.Sprintf("%slevel=info msg=\"request served\" method=%s path=%s/%d status=%d duration=%.3fms user=%s req=%016x bytes=%d",
		word, benchWords[rng.IntN(len(benchWords))], benchPaths[rng.IntN(len(benchPaths))], rng.IntN(100000),
		[]int{200, 200, 200, 201, 204, 304, 404, 500}[rng.IntN(8)], rng.Float64()*250, benchUsers[rng.IntN(len(benchUsers))],
		rng.Uint64(), rng.IntN(65536))
	for len(s) < 200 {
		s += " pad=" + strconv.Itoa(rng.IntN(1000))
	}
	return s[:200]
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}
