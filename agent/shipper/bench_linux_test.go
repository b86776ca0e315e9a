package shipper

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-io/skiff/runtime/shim"
)

// BenchmarkShipper1000LinesPerSecond measures the shipper's CPU per 1,000
// lines/s: 10 containers each writing 100 lines of 200 bytes a second
// for 10 s, shipped to one master (an in-process TLS endpoint that reads
// and discards the body). The same writers and endpoint run once without
// a shipper; the difference in the process's CPU time (getrusage) is the
// shipper's. Peak RSS and Go heap are sampled while it runs.
func BenchmarkShipper1000LinesPerSecond(b *testing.B) {
	const (
		containers = 10
		perSecond  = 100
		seconds    = 10
	)
	var received atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		received.Add(n)
		io.WriteString(w, `{"accepted":0,"duplicates":0}`)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	line := strings.Repeat("x", 190)
	run := func(withShipper bool) (cpu time.Duration, peakRSS, peakHeap uint64, lines float64) {
		dir := b.TempDir()
		podLogs := filepath.Join(dir, "pods")
		var loggers []*shim.CRILogger
		for i := 0; i < containers; i++ {
			l, err := shim.NewCRILogger(filepath.Join(podLogs, fmt.Sprintf("ns_p%d_uid%d", i, i), "c", "0.log"), 0, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			loggers = append(loggers, l)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		var s *Shipper
		if withShipper {
			var err error
			s, err = New(Config{Node: "bench", Cluster: "c", Dir: filepath.Join(dir, "shipper"), PodLogDir: podLogs,
				Masters: func() []string { return []string{u.Host} }, Transport: srv.Client().Transport,
				RateLimit: 1000, Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			go func() { defer close(done); s.Run(ctx) }()
		} else {
			close(done)
		}
		runtime.GC()
		cpu0 := cpuTime()
		tick := time.NewTicker(100 * time.Millisecond)
		n := 0
		for t := 0; t < seconds*10; t++ {
			<-tick.C
			for _, l := range loggers {
				for k := 0; k < perSecond/10; k++ {
					if err := l.Write("stdout", []byte(line+strconv.Itoa(n)), false); err != nil {
						b.Fatal(err)
					}
					n++
				}
			}
			var ms runtime.MemStats
			if t%10 == 0 {
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
				peakRSS = max(peakRSS, rss())
			}
		}
		tick.Stop()
		cpu = cpuTime() - cpu0
		if withShipper {
			want := float64(n)
			deadline := time.Now().Add(10 * time.Second)
			for s.m.shipped.WithLabelValues(destName("master", u.Host)) != nil {
				if got := counterValue(s, destName("master", u.Host)); got >= want || time.Now().After(deadline) {
					lines = got
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		cancel()
		<-done
		return cpu, peakRSS, peakHeap, lines
	}
	for i := 0; i < b.N; i++ {
		base, _, _, _ := run(false)
		cpu, rssPeak, heap, shipped := run(true)
		if shipped < containers*perSecond*seconds {
			b.Fatalf("shipped %v of %d lines", shipped, containers*perSecond*seconds)
		}
		share := 100 * (cpu - base).Seconds() / seconds
		b.ReportMetric(share, "%core/1000lines/s")
		b.ReportMetric(float64(rssPeak)/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MiB")
		b.Logf("CPU %s with the shipper, %s without, over %ds; %v lines shipped, %d body bytes received", cpu, base, seconds, shipped, received.Load())
	}
}

func counterValue(s *Shipper, name string) float64 {
	var m dtoMetric
	_ = s.m.shipped.WithLabelValues(name).Write(&m.Metric)
	return m.Metric.GetCounter().GetValue()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rss is the process's resident set (VmRSS) in bytes.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
