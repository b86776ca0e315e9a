package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// BenchmarkAbandonedWatches (issue 15): one client opens
// SKIFF_BENCH_ABANDONED_WATCHES (1,000) watches of a namespace holding
// 3.6 MB of ConfigMaps (1,200 of 3,000 bytes; each watch starts with the
// whole list as ADDED events) and never reads them, while another client
// GETs one ConfigMap every 20 ms. It reports the master's peak RSS, from
// the first watch until they have sat open for 5 s, and the GETs' latency.
//
// The abandoning client is a process of its own (this test binary run as
// TestAbandonHelper), as an attacker would be: in the benchmark's process
// its buffering of 3.6 GB would slow the GETs' client, not the master. It
// uses the admin credentials, exempt from --max-watches-per-user (1,000 by
// default, so a non-admin user could open as many). HTTP/2, the watches
// over a few connections, as client-go opens them; the client buffers up
// to 4 MiB a stream, so each master sends the whole list.
// SKIFF_BENCH_WATCH_PROTO=http1 opens them over HTTP/1.1 instead, a
// connection each, the master then blocked on a full socket mid-list.
func BenchmarkAbandonedWatches(b *testing.B) {
	nw := envInt("SKIFF_BENCH_ABANDONED_WATCHES", 1000)
	const (
		nObjects = 1200
		objSize  = 3000
	)
	m, cs := startMaster(b, "abandon")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	payload := strings.Repeat("x", objSize)
	fill(b, nObjects, func(i int) error {
		_, err := cs.CoreV1().ConfigMaps("bench").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%05d", i)},
			Data:       map[string]string{"payload": payload},
		}, metav1.CreateOptions{})
		return err
	})
	time.Sleep(2 * time.Second) // let creation garbage be collected
	before := rssKiB(b, m.Pid())

	// Peak RSS, sampled every 10 ms.
	var peak atomic.Int64
	peak.Store(int64(before))
	stopSampling, sampleDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampleDone)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
			if v := int64(rssKiBOf(m.Pid())); v > peak.Load() {
				peak.Store(v)
			}
		}
	}()

	// GETs of one ConfigMap, all along.
	getClient := m.HTTPClient()
	var (
		idleLat, lat []time.Duration
		during       atomic.Bool // the helper has started
		getErr       atomic.Int64
	)
	stopGets, getsDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(getsDone)
		url := m.URL() + "/api/v1/namespaces/bench/configmaps/cm-00000"
		for {
			select {
			case <-stopGets:
				return
			case <-time.After(20 * time.Millisecond):
			}
			start := time.Now()
			resp, err := getClient.Get(url)
			if err != nil {
				getErr.Add(1)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				getErr.Add(1)
				continue
			}
			if during.Load() {
				lat = append(lat, time.Since(start))
			} else {
				idleLat = append(idleLat, time.Since(start))
			}
		}
	}()
	time.Sleep(2 * time.Second) // GETs on the idle master first: the machine's baseline

	// The abandoning client.
	helper := exec.Command(os.Args[0], "-test.run=^TestAbandonHelper$", "-test.bench=^$")
	helper.Env = append(os.Environ(), "SKIFF_ABANDON_HELPER=1", "SKIFF_ABANDON_URL="+m.URL(),
		"SKIFF_ABANDON_KUBECONFIG="+m.Kubeconfig(), "SKIFF_ABANDON_WATCHES="+strconv.Itoa(nw))
	helper.Stderr = os.Stderr
	helper.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := helper.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := helper.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	profileDone := profileMaster(b, m, "abandoned-watches", 10*time.Second)
	defer profileDone()
	t0 := time.Now()
	during.Store(true)
	if err := helper.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = helper.Process.Kill(); _ = helper.Wait() }()
	var opened, refused int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "abandon-helper: opened %d refused %d", &opened, &refused); err == nil {
			break
		}
	}
	openTime := time.Since(t0)
	if opened+refused < nw {
		b.Fatalf("the helper opened %d watches (%d refused) of %d", opened, refused, nw)
	}
	// Until the master has sent what the watches take (its CPU falls
	// idle), then 2 s more: the GETs span all of its work.
	prev := cpuTicks(m.Pid())
	for time.Since(t0) < 60*time.Second {
		time.Sleep(500 * time.Millisecond)
		cur := cpuTicks(m.Pid())
		if cur-prev < 5 { // under 10% of a core over 0.5 s (100 ticks/s)
			break
		}
		prev = cur
	}
	busy := time.Since(t0)
	time.Sleep(2 * time.Second)
	close(stopGets)
	<-getsDone
	close(stopSampling)
	<-sampleDone
	after := rssKiB(b, m.Pid())
	_ = stdin.Close() // the helper closes its watches and exits

	p50, p99, idle99 := percentile(lat, 0.50), percentile(lat, 0.99), percentile(idleLat, 0.99)
	b.ReportMetric(float64(peak.Load())/1024, "peak-RSS-MiB")
	b.ReportMetric(ms(p99), "GET-p99-ms")
	b.ReportMetric(ms(p50), "GET-p50-ms")
	b.ReportMetric(ms(idle99), "idle-GET-p99-ms")
	b.ReportMetric(float64(opened), "watches-open")
	b.ReportMetric(busy.Seconds(), "busy-s")
	fmt.Printf("abandoned watches: %d opened (%d refused) in %s, the master busy for %s, over %d ConfigMaps (%.1f MB); master RSS %.1f MiB before, peak %.1f MiB, %.1f MiB at the end; GET during: p50=%.1fms p99=%.1fms over %d GETs (%d failed); before, on the idle master: p99=%.1fms over %d\n",
		opened, refused, openTime.Round(time.Millisecond), busy.Round(100*time.Millisecond), nObjects, float64(nObjects*objSize)/1e6,
		float64(before)/1024, float64(peak.Load())/1024, float64(after)/1024, ms(p50), ms(p99), len(lat), getErr.Load(), ms(idle99), len(idleLat))
}

// TestAbandonHelper is BenchmarkAbandonedWatches' abandoning client, run
// in a process of its own: it opens the watches, reads their response
// headers and none of their bodies, reports on stdout and holds them until
// its stdin closes.
func TestAbandonHelper(t *testing.T) {
	if os.Getenv("SKIFF_ABANDON_HELPER") == "" {
		t.Skip("run by BenchmarkAbandonedWatches")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("SKIFF_ABANDON_KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host = os.Getenv("SKIFF_ABANDON_URL")
	nw, _ := strconv.Atoi(os.Getenv("SKIFF_ABANDON_WATCHES"))
	var hc *http.Client
	if os.Getenv("SKIFF_BENCH_WATCH_PROTO") == "http1" {
		tlsCfg, err := rest.TLSConfigFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg,
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	} else if hc, err = rest.HTTPClientFor(cfg); err != nil {
		t.Fatal(err)
	}
	var (
		opened, refused atomic.Int64
		bodies          sync.Map
		wg              sync.WaitGroup
	)
	sem := make(chan struct{}, 50)
	for i := 0; i < nw; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := hc.Get(cfg.Host + "/api/v1/namespaces/bench/configmaps?watch=true")
			if err != nil {
				t.Errorf("watch %d: %v", i, err)
				return
			}
			if resp.StatusCode != http.StatusOK {
				refused.Add(1)
				resp.Body.Close()
				return
			}
			opened.Add(1)
			bodies.Store(i, resp.Body) // abandoned: never read
		}(i)
	}
	wg.Wait()
	fmt.Printf("abandon-helper: opened %d refused %d\n", opened.Load(), refused.Load())
	_, _ = io.Copy(io.Discard, os.Stdin)
	bodies.Range(func(_, v any) bool { v.(io.Closer).Close(); return true })
}

// cpuTicks is the user and system CPU time of pid, in clock ticks.
func cpuTicks(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// rssKiBOf is the VmRSS of pid in KiB, 0 if it cannot be read.
func rssKiBOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}
