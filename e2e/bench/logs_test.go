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
// Ingest: SKIFF_BENCH_LOG_LINES lines (default 10,000,000) of ~200 bytes
// of templated application logs (benchLogGen) from 200 pods in 20 namespaces, spread over the last 6 hours, posted
// by 4 concurrent shippers in gzip'd NDJSON batches of 5,000 records
// (as the agents' shippers send them, encoded before the clock starts)
// with the master's own credentials.
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
		workers = 4
		pods    = 200
		batch   = 5000
		span    = 6 * time.Hour
	)
	start := time.Now().Add(-span)
	perWorker := total / workers
	// The batches are encoded and gzip'd before the clock starts: on a
	// cluster the shippers do that on the nodes, not on the master's cores.
	type batchBody struct {
		gz    []byte
		lines int
	}
	bodies := make([][]batchBody, workers)
	var rawBytes atomic.Int64
	var gen sync.WaitGroup
	for w := 0; w < workers; w++ {
		gen.Add(1)
		go func() {
			defer gen.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			lg := newBenchLogGen(rng, w)
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
					msg := lg.line(k, ts)
					rawBytes.Add(int64(len(msg)))
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
				zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
				_, _ = zw.Write(raw.Bytes())
				_ = zw.Close()
				bodies[w] = append(bodies[w], batchBody{gz: bytes.Clone(gz.Bytes()), lines: n})
				done += n
			}
		}()
	}
	gen.Wait()
	var posted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	t0 := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, bb := range bodies[w] {
				req, _ := http.NewRequest(http.MethodPost, m.URL()+"/logs/v1/ingest", bytes.NewReader(bb.gz))
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
				posted.Add(int64(bb.lines))
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
	avgLine := float64(rawBytes.Load()) / float64(lines)
	b.Logf("ingest: %d lines (%.1f bytes on average) in %v: %.0f lines/s", lines, avgLine, elapsed.Round(time.Millisecond), float64(lines)/elapsed.Seconds())

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
	b.ReportMetric(100*perLine/avgLine, "disk-%-of-raw")
	b.Logf("disk: %d bytes, %.1f bytes/line, %.1f%% of the messages' raw size", size, perLine, 100*perLine/avgLine)

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
	benchMethods = []string{"GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE"}
	benchPaths   = []string{"/api/v1/items", "/api/v1/users", "/healthz", "/api/v1/orders", "/static/app.js", "/api/v1/cart", "/api/v1/search", "/metrics"}
	benchUsers   = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
	benchStatus  = []int{200, 200, 200, 200, 200, 200, 201, 204, 304, 400, 404, 500}
	benchTables  = []string{"orders", "users", "items", "carts", "sessions"}
	benchAgents  = []string{"Mozilla/5.0 (X11; Linux x86_64)", "okhttp/4.12.0", "kube-probe/1.30", "Go-http-client/1.1", "curl/8.5.0"}
)

// benchLogGen makes application log lines as services write them: a
// timestamp, a level and a logger, one of a dozen templates (access
// log, SQL, cache, upstream calls, auth, retries, errors), with request
// ids shared by the few lines of one request, ids, paths, durations and
// sizes varying; about 200 bytes on average. A rare word appears once in
// 1,000,000 lines.
type benchLogGen struct {
	rng *rand.Rand
	w   int
	req string
	// reqLeft: lines left for the current request id.
	reqLeft int
}

func newBenchLogGen(rng *rand.Rand, w int) *benchLogGen { return &benchLogGen{rng: rng, w: w} }

func (g *benchLogGen) dur() string {
	// Mostly milliseconds, a long tail.
	d := g.rng.ExpFloat64() * 12
	if g.rng.IntN(50) == 0 {
		d *= 40
	}
	return strconv.FormatFloat(d, 'f', 1, 64) + "ms"
}

func (g *benchLogGen) line(k int, ts time.Time) string {
	r := g.rng
	if g.reqLeft == 0 {
		g.req = fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", r.Uint32(), r.IntN(1<<16), r.IntN(1<<12), 0x8000|r.IntN(1<<14), r.Uint64()>>16)
		g.reqLeft = 1 + r.IntN(6)
	}
	g.reqLeft--
	word := ""
	if (k+g.w*7919)%1_000_000 == 4242 {
		word = " zanzibar"
	}
	stamp := ts.UTC().Format("2006-01-02T15:04:05.000Z")
	user := benchUsers[r.IntN(len(benchUsers))]
	path := benchPaths[r.IntN(len(benchPaths))]
	switch n := r.IntN(100); {
	case n < 45:
		return fmt.Sprintf("%s INFO  http.access request_id=%s method=%s path=%s/%d status=%d duration=%s bytes=%d user=%s client=10.42.%d.%d agent=%q%s",
			stamp, g.req, benchMethods[r.IntN(len(benchMethods))], path, r.IntN(5000), benchStatus[r.IntN(len(benchStatus))], g.dur(), 200+r.IntN(20000), user, r.IntN(4), 2+r.IntN(250), benchAgents[r.IntN(len(benchAgents))], word)
	case n < 60:
		t := benchTables[r.IntN(len(benchTables))]
		return fmt.Sprintf("%s DEBUG db.query request_id=%s query=\"SELECT * FROM %s WHERE id = $1 AND tenant_id = $2\" rows=%d duration=%s%s",
			stamp, g.req, t, r.IntN(50), g.dur(), word)
	case n < 72:
		return fmt.Sprintf("%s INFO  cache request_id=%s key=%s:%d hit=%t ttl=%ds duration=%s%s",
			stamp, g.req, benchTables[r.IntN(len(benchTables))], r.IntN(100000), r.IntN(4) != 0, 60*(1+r.IntN(10)), g.dur(), word)
	case n < 82:
		return fmt.Sprintf("%s INFO  upstream.call request_id=%s service=payments-api endpoint=/v2/charges status=%d attempt=1 duration=%s%s",
			stamp, g.req, benchStatus[r.IntN(len(benchStatus))], g.dur(), word)
	case n < 88:
		return fmt.Sprintf("%s INFO  auth request_id=%s user=%s method=oidc result=ok session=%08x expires_in=3600s%s",
			stamp, g.req, user, r.Uint32(), word)
	case n < 93:
		return fmt.Sprintf("%s WARN  upstream.call request_id=%s service=inventory endpoint=/v1/stock retry=%d/3 after=%s error=\"context deadline exceeded\"%s",
			stamp, g.req, 1+r.IntN(3), g.dur(), word)
	case n < 96:
		return fmt.Sprintf("%s ERROR handler request_id=%s path=%s error=\"pq: duplicate key value violates unique constraint \\\"%s_pkey\\\"\" user=%s%s",
			stamp, g.req, path, benchTables[r.IntN(len(benchTables))], user, word)
	case n < 98:
		return fmt.Sprintf("%s INFO  worker.job job=send-email id=%d queue=default attempts=1 duration=%s result=done%s",
			stamp, 100000+k, g.dur(), word)
	default:
		return fmt.Sprintf("%s INFO  runtime gc heap_alloc=%dMiB heap_objects=%d goroutines=%d pause=%dus%s",
			stamp, 40+r.IntN(200), 100000+r.IntN(900000), 20+r.IntN(300), 50+r.IntN(500), word)
	}
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
