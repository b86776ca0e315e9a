// Package bench measures a 3-master Skiff cluster on loopback: write
// throughput and latency, failover time and memory. `make bench` runs it;
// figures go to docs/BENCHMARKS.md.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func clientFor(b testing.TB, c *testutil.Cluster, m *testutil.Master) *kubernetes.Clientset {
	cfg := c.Masters[0].RESTConfig()
	cfg.Host = m.URL()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatalf("clientset: %v", err)
	}
	return cs
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(float64(len(d)-1) * p)
	return d[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkWrites: N concurrent clients, spread over the three masters,
// create ConfigMaps (~200 bytes of data) for a fixed time.
func BenchmarkWrites(b *testing.B) {
	c := testutil.StartCluster(b, 3)
	dur := envDuration("SKIFF_BENCH_DURATION", 10*time.Second)
	clients := make([]*kubernetes.Clientset, len(c.Masters))
	for i, m := range c.Masters {
		clients[i] = clientFor(b, c, m)
	}
	payload := strings.Repeat("x", 200)
	for _, n := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			var (
				mu      sync.Mutex
				lat     []time.Duration
				errs    atomic.Int64
				wg      sync.WaitGroup
				stop    = time.Now().Add(dur)
				started = time.Now()
			)
			profileDone := profileMasters(b, c, fmt.Sprintf("writes-%d", n), dur)
			defer profileDone()
			cpu0 := mastersCPU(c)
			for w := 0; w < n; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					cs := clients[w%len(clients)]
					var mine []time.Duration
					for j := 0; time.Now().Before(stop); j++ {
						cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("b%d-%d-%d", n, w, j)}, Data: map[string]string{"p": payload}}
						t0 := time.Now()
						_, err := cs.CoreV1().ConfigMaps("default").Create(context.Background(), cm, metav1.CreateOptions{})
						if err != nil {
							errs.Add(1)
							continue
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				}(w)
			}
			wg.Wait()
			el := time.Since(started)
			cpu := mastersCPU(c) - cpu0
			rate := float64(len(lat)) / el.Seconds()
			b.ReportMetric(rate, "writes/s")
			b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
			b.ReportMetric(float64(errs.Load()), "errors")
			perWrite := cpu.Seconds() * 1000 / float64(max(len(lat), 1))
			b.ReportMetric(perWrite, "masters-cpu-ms/write")
			fmt.Printf("writes clients=%d: %.0f writes/s p50=%.2fms p99=%.2fms errors=%d (%d writes in %s); the three masters' CPU %.2f ms per write\n",
				n, rate, ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)), errs.Load(), len(lat), el.Round(time.Millisecond), perWrite)
		})
	}
}

// mastersCPU is the CPU time the cluster's masters have used so far.
func mastersCPU(c *testutil.Cluster) time.Duration {
	var sum time.Duration
	for _, m := range c.Masters {
		if d, ok := processCPU(m.Pid()); ok {
			sum += d
		}
	}
	return sum
}

// BenchmarkFailover: kill -9 the leader, measure the time until the first
// acknowledged write through a surviving master, restart it; repeat.
// SKIFF_BENCH_FAILOVER_SIGNAL=term stops the leader with SIGTERM instead
// (a planned stop: it hands its leadership over first).
func BenchmarkFailover(b *testing.B) {
	kills := 20
	if v, err := strconv.Atoi(os.Getenv("SKIFF_BENCH_KILLS")); err == nil && v > 0 {
		kills = v
	}
	term := os.Getenv("SKIFF_BENCH_FAILOVER_SIGNAL") == "term"
	c := testutil.StartCluster(b, 3)
	var times []time.Duration
	for k := 0; k < kills; k++ {
		leader := c.Leader(20 * time.Second)
		var survivor *testutil.Master
		for _, m := range c.Running() {
			if m != leader {
				survivor = m
				break
			}
		}
		cs := clientFor(b, c, survivor)
		t0 := time.Now()
		if term {
			if err := leader.Signal(syscall.SIGTERM); err != nil {
				b.Fatal(err)
			}
		} else {
			leader.Kill()
		}
		for j := 0; ; j++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fo-%d-%d", k, j)}}
			_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
			cancel()
			if err == nil {
				break
			}
			if time.Since(t0) > 60*time.Second {
				b.Fatalf("no write acknowledged 60s after killing the leader: %v", err)
			}
		}
		times = append(times, time.Since(t0))
		b.Logf("kill %d of %s at %s: %s", k, leader.Name, t0.UTC().Format("15:04:05.000"), times[len(times)-1].Round(time.Millisecond))
		leader.Stop() // waits for the SIGTERMed one to exit
		leader.Start()
		leader.WaitReady(30 * time.Second)
	}
	p50, p99 := percentile(times, 0.5), percentile(times, 0.99)
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	how := "kill -9"
	if term {
		how = "SIGTERM"
	}
	fmt.Printf("failover over %d stops of the leader (%s): p50=%.0fms p99=%.0fms max=%.0fms\n", kills, how, ms(p50), ms(p99), ms(times[len(times)-1]))
}

// BenchmarkMemory: RSS of one idle master, then holding 10,000 ConfigMaps.
func BenchmarkMemory(b *testing.B) {
	// Unsupervised: the pid whose RSS is read is the master's own.
	m := testutil.NewMaster(b, testutil.MasterOptions{Name: "mem", Args: []string{"--supervise=false"}})
	m.Start()
	m.WaitReady(30 * time.Second)
	time.Sleep(2 * time.Second) // let start-up garbage be collected before reading RSS
	idle := rssKiB(b, m.Pid())
	cs, err := kubernetes.NewForConfig(m.RESTConfig())
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := w; j < 10000; j += 32 {
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("mem-%d", j)}, Data: map[string]string{"p": strings.Repeat("x", 200)}}
				if _, err := cs.CoreV1().ConfigMaps("default").Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
					b.Errorf("create: %v", err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	full := rssKiB(b, m.Pid())
	b.ReportMetric(float64(idle)/1024, "idle-MiB")
	b.ReportMetric(float64(full)/1024, "10k-configmaps-MiB")
	fmt.Printf("memory: idle master RSS=%.1f MiB, with 10,000 ConfigMaps RSS=%.1f MiB\n", float64(idle)/1024, float64(full)/1024)
}

func rssKiB(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// profileMasters saves a CPU profile of every master during the run when
// SKIFF_BENCH_PPROF_DIR is set; the returned func waits for them.
func profileMasters(b *testing.B, c *testutil.Cluster, name string, dur time.Duration) func() {
	dir := os.Getenv("SKIFF_BENCH_PPROF_DIR")
	if dir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	for _, m := range c.Masters {
		wg.Add(1)
		go func(m *testutil.Master) {
			defer wg.Done()
			secs := int(dur.Seconds()) - 1
			if secs < 1 {
				secs = 1
			}
			resp, err := c.Admin.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", m.URL(), secs))
			if err != nil {
				b.Logf("profile %s: %v", m.Name, err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(fmt.Sprintf("%s/%s-%s.pprof", dir, name, m.Name))
			if err != nil {
				b.Logf("profile %s: %v", m.Name, err)
				return
			}
			defer f.Close()
			_, _ = io.Copy(f, resp.Body)
		}(m)
	}
	return wg.Wait
}
