package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// Kubernetes API benchmarks (issue 3): large LISTs as JSON and Table, and
// many concurrent watches on one master.

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// startMaster starts one master, unsupervised: its pid is the master's
// own, whose RSS the benchmarks read (a supervised one's is the
// supervisor's).
func startMaster(b *testing.B, name string, args ...string) (*testutil.Master, *kubernetes.Clientset) {
	m := testutil.NewMaster(b, testutil.MasterOptions{Name: name, Args: append([]string{"--supervise=false"}, args...)})
	m.Start()
	m.WaitReady(30 * time.Second)
	cfg := m.RESTConfig()
	cfg.ContentType = runtime.ContentTypeProtobuf
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	return m, cs
}

// fill creates n objects with 32 concurrent clients.
func fill(b *testing.B, n int, create func(i int) error) {
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				if err := create(i); err != nil {
					if failed.Add(1) == 1 {
						b.Errorf("create %d: %v", i, err)
					}
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.FailNow()
	}
}

// BenchmarkListLarge: LIST of 10,000 ConfigMaps and of 10,000 Pods from
// one master, as JSON, as protobuf (what typed clients and informers ask
// for) and as Table (what kubectl get asks for): latency and bytes/s over
// SKIFF_BENCH_LISTS sequential requests each, and protobuf's p50 as a
// ratio of JSON's.
func BenchmarkListLarge(b *testing.B) {
	n := envInt("SKIFF_BENCH_OBJECTS", 10000)
	reps := envInt("SKIFF_BENCH_LISTS", 30)
	m, cs := startMaster(b, "list")
	ctx := context.Background()
	payload := strings.Repeat("x", 200)
	t0 := time.Now()
	fill(b, n, func(i int) error {
		_, err := cs.CoreV1().ConfigMaps("bench").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%05d", i), Labels: map[string]string{"app": "bench"}},
			Data:       map[string]string{"payload": payload},
		}, metav1.CreateOptions{})
		return err
	})
	fill(b, n, func(i int) error {
		_, err := cs.CoreV1().Pods("bench").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%05d", i), Labels: map[string]string{"app": "bench"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1.0",
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
		}, metav1.CreateOptions{})
		return err
	})
	fmt.Printf("list: created %d ConfigMaps and %d Pods in %s\n", n, n, time.Since(t0).Round(time.Millisecond))
	hc := m.HTTPClient()
	for _, res := range []string{"configmaps", "pods"} {
		p50 := map[string]time.Duration{}
		for _, form := range []struct{ name, accept string }{
			{"json", "application/json"},
			{"protobuf", "application/vnd.kubernetes.protobuf,application/json"},
			{"table", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
		} {
			b.Run(res+"/"+form.name, func(b *testing.B) {
				var (
					lat   []time.Duration
					bytes int64
					busy  time.Duration
				)
				url := m.URL() + "/api/v1/namespaces/bench/" + res
				for i := 0; i < reps; i++ {
					req, _ := http.NewRequest(http.MethodGet, url, nil)
					req.Header.Set("Accept", form.accept)
					start := time.Now()
					resp, err := hc.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					nb, err := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					d := time.Since(start)
					if err != nil || resp.StatusCode != 200 {
						b.Fatalf("list %s: %d %v", res, resp.StatusCode, err)
					}
					if ct := resp.Header.Get("Content-Type"); form.name == "protobuf" && ct != "application/vnd.kubernetes.protobuf" {
						b.Fatalf("list %s as protobuf: Content-Type %q", res, ct)
					}
					lat = append(lat, d)
					bytes += nb
					busy += d
				}
				mbps := float64(bytes) / busy.Seconds() / (1 << 20)
				p50[form.name] = percentile(lat, 0.50)
				b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
				b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
				b.ReportMetric(mbps, "MiB/s")
				fmt.Printf("list %s as %s (%d objects, %.1f MiB each): p50=%.0fms p99=%.0fms %.1f MiB/s over %d lists\n",
					res, form.name, n, float64(bytes)/float64(reps)/(1<<20), ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)), mbps, reps)
			})
		}
		if p50["json"] > 0 && p50["protobuf"] > 0 {
			fmt.Printf("list %s: protobuf p50 / json p50 = %.2f (load average %s)\n", res,
				float64(p50["protobuf"])/float64(p50["json"]), loadAverage())
		}
	}
}

// BenchmarkWatches: SKIFF_BENCH_WATCHES (10,000) concurrent watches on one
// master, each of one ConfigMap (fieldSelector metadata.name), while a
// writer updates the ConfigMaps at SKIFF_BENCH_WRITE_RATE (1,000/s) for
// SKIFF_BENCH_DURATION: RSS per watch, and the delay from the start of
// each write to its delivery.
func BenchmarkWatches(b *testing.B) {
	nw := envInt("SKIFF_BENCH_WATCHES", 10000)
	rate := envInt("SKIFF_BENCH_WRITE_RATE", 1000)
	dur := envDuration("SKIFF_BENCH_DURATION", 10*time.Second)
	m, cs := startMaster(b, "watch")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fill(b, nw, func(i int) error {
		_, err := cs.CoreV1().ConfigMaps("bench").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("w-%05d", i)},
			Data:       map[string]string{"t": "0"},
		}, metav1.CreateOptions{})
		return err
	})
	list, err := cs.CoreV1().ConfigMaps("bench").List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	rv := list.ResourceVersion
	time.Sleep(2 * time.Second) // let creation garbage be collected before reading RSS
	before := rssKiB(b, m.Pid())

	// Watches spread over several HTTP/2 clients (each connection carries
	// at most 250 streams).
	cfg := m.RESTConfig()
	clients := make([]*http.Client, 16)
	for i := range clients {
		hc, err := rest.HTTPClientFor(rest.CopyConfig(cfg))
		if err != nil {
			b.Fatal(err)
		}
		hc.Timeout = 0
		clients[i] = hc
	}
	var (
		opened   atomic.Int64
		received atomic.Int64
		mu       sync.Mutex
		delays   []time.Duration
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, 200)
	for i := 0; i < nw; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			url := fmt.Sprintf("%s/api/v1/namespaces/bench/configmaps?watch=true&resourceVersion=%s&fieldSelector=metadata.name%%3Dw-%05d&timeoutSeconds=3600", m.URL(), rv, i)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := clients[i%len(clients)].Do(req)
			<-sem
			if err != nil {
				if ctx.Err() == nil {
					b.Errorf("watch %d: %v", i, err)
				}
				return
			}
			defer resp.Body.Close()
			opened.Add(1)
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				now := time.Now()
				var ev struct {
					Type   string `json:"type"`
					Object struct {
						Data map[string]string `json:"data"`
					} `json:"object"`
				}
				if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Type != "MODIFIED" {
					continue
				}
				ns, err := strconv.ParseInt(ev.Object.Data["t"], 10, 64)
				if err != nil || ns == 0 {
					continue
				}
				received.Add(1)
				mu.Lock()
				delays = append(delays, now.Sub(time.Unix(0, ns)))
				mu.Unlock()
			}
		}(i)
	}
	testutil.WaitFor(b, 120*time.Second, "all watches open", func() error {
		if n := opened.Load(); n < int64(nw) {
			return fmt.Errorf("%d of %d open", n, nw)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // let the server settle before reading RSS
	after := rssKiB(b, m.Pid())
	perWatch := float64(after-before) * 1024 / float64(nw)

	// Writes at the target rate, spread over the watched objects.
	var (
		sent, wfail atomic.Int64
		wwg         sync.WaitGroup
	)
	ticks := make(chan int, rate)
	for w := 0; w < 32; w++ {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for i := range ticks {
				t := strconv.FormatInt(time.Now().UnixNano(), 10)
				patch := []byte(`{"data":{"t":"` + t + `"}}`)
				if _, err := cs.CoreV1().ConfigMaps("bench").Patch(ctx, fmt.Sprintf("w-%05d", i%nw), "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
					wfail.Add(1)
					continue
				}
				sent.Add(1)
			}
		}()
	}
	profileDone := profileMaster(b, m, "watches", dur)
	defer profileDone()
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := 0; time.Since(start) < dur; i++ {
		select {
		case ticks <- i:
		default: // writers behind: the offered rate is not reached
		}
		if d := start.Add(time.Duration(i+1) * interval).Sub(time.Now()); d > 0 {
			time.Sleep(d)
		}
	}
	close(ticks)
	wwg.Wait()
	elapsed := time.Since(start)
	testutil.Poll(10*time.Second, func() error {
		if received.Load() < sent.Load() {
			return fmt.Errorf("%d of %d delivered", received.Load(), sent.Load())
		}
		return nil
	})
	cancel()
	wg.Wait()
	mu.Lock()
	d := append([]time.Duration(nil), delays...)
	mu.Unlock()
	writeRate := float64(sent.Load()) / elapsed.Seconds()
	b.ReportMetric(perWatch, "B/watch")
	b.ReportMetric(writeRate, "writes/s")
	b.ReportMetric(ms(percentile(d, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(d, 0.99)), "p99-ms")
	fmt.Printf("watches=%d: RSS %.1f → %.1f MiB (%.0f B/watch); %d writes at %.0f/s (%d failed), %d of them delivered; write→delivery p50=%.1fms p99=%.1fms\n",
		nw, float64(before)/1024, float64(after)/1024, perWatch, sent.Load(), writeRate, wfail.Load(), received.Load(),
		ms(percentile(d, 0.50)), ms(percentile(d, 0.99)))
}

// profileMaster saves a CPU profile of m during the next dur when
// SKIFF_BENCH_PPROF_DIR is set; the returned func waits for it.
func profileMaster(b *testing.B, m *testutil.Master, name string, dur time.Duration) func() {
	dir := os.Getenv("SKIFF_BENCH_PPROF_DIR")
	if dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		secs := max(int(dur.Seconds())-1, 1)
		resp, err := m.HTTPClient().Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", m.URL(), secs))
		if err != nil {
			b.Logf("profile: %v", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(fmt.Sprintf("%s/%s.pprof", dir, name))
		if err != nil {
			b.Logf("profile: %v", err)
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
	}()
	return func() { <-done }
}

// loadAverage is the machine's 1-minute load average ("?" if unknown),
// printed beside ratios measured on a shared machine.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}
