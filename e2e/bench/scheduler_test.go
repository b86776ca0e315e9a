package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// Scheduler benchmarks (issue 6): pods bound per second by the leader's
// scheduler with 1,000 and 5,000 hollow nodes (one `skiff agent
// --hollow-nodes N` process: real kubelets, fake containers), one master.
//
// Two phases per cluster size:
//   - backlog (kube-scheduler's scheduler_perf setting: Node objects, no
//     kubelets): the hollow nodes register and are then stopped (their
//     Nodes stay Ready for the 5m grace period); SKIFF_BENCH_SCHED_PODS
//     pods (10,000) are created while the master runs with
//     --disable-scheduler; the master is restarted with its scheduler,
//     which binds the backlog (what a new leader does). Throughput is
//     pods / (last binding - first binding).
//   - online (kubemark's setting): the backlog is deleted, the hollow
//     kubelets run again, and as many pods are created by 32 clients while
//     the scheduler runs; the kubelets start every pod they get (status
//     updates and events: the API takes several writes per pod besides its
//     binding). Throughput is pods / (last binding - first creation), next
//     to the creation rate.
//
// SKIFF_BENCH_SCHED_NODES="1000,5000" picks the sizes;
// SKIFF_BENCH_SCHED_ONLINE=0 skips the online phase.
func BenchmarkScheduling(b *testing.B) {
	sizes := []int{1000, 5000}
	if v := os.Getenv("SKIFF_BENCH_SCHED_NODES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
				sizes = append(sizes, n)
			}
		}
	}
	pods := envInt("SKIFF_BENCH_SCHED_PODS", 10000)
	for _, n := range sizes {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) { benchScheduling(b, n, pods) })
	}
}

func benchScheduling(b *testing.B, nodes, pods int) {
	m := testutil.NewMaster(b, testutil.MasterOptions{Name: "sched", Args: []string{
		"--disable-scheduler",
		// Hollow nodes renew their Leases every 30s (5,000 nodes at the
		// kubelet's 10s would be 500 Raft writes/s of heartbeats alone);
		// stopped hollow nodes stay Ready for 5 minutes.
		"--node-monitor-grace-period", "5m", "--node-startup-grace-period", "10m",
		// A /24 per node: room for 65,536 nodes.
		"--cluster-cidr", "10.0.0.0/8",
	}})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := protoClient(b, m)
	t0 := time.Now()
	var h *testutil.HollowNodes
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("master log:\n%s", m.LogTail(40))
		}
		keepLogs(b, m.LogPath(), fmt.Sprintf("scheduling-%d-master.log", nodes))
		if h != nil {
			keepLogs(b, h.LogPath(), fmt.Sprintf("scheduling-%d-hollow.log", nodes))
		}
	})
	h = testutil.NewHollowNodes(b, testutil.HollowOptions{Count: nodes, Server: m.URL(), Kubeconfig: m.Kubeconfig(),
		// No gossip: 5,000 members in one process would take the two
		// cores for themselves (each probes a member every 400 ms); the
		// gossip benchmarks measure it. The Nodes' health is their Lease.
		Args: []string{"--node-lease-duration", "2m", "--node-status-interval", "1m", "--hollow-zones", "5", "--disable-gossip"}})
	h.Start()
	h.WaitReady(cs, 20*time.Minute)
	fmt.Printf("scheduling nodes=%d: %d hollow nodes Ready in %s (hollow process RSS %.0f MiB)\n",
		nodes, nodes, time.Since(t0).Round(time.Second), rssMiB(h.Pid()))
	h.Kill()

	ns := "sched-bench"
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	// Backlog: create the pods with no scheduler running.
	t0 = time.Now()
	fill(b, pods, func(i int) error {
		_, err := cs.CoreV1().Pods(ns).Create(context.Background(), benchPod(fmt.Sprintf("backlog-%d", i)), metav1.CreateOptions{})
		return err
	})
	fmt.Printf("scheduling nodes=%d: %d pods created in %s (%.0f/s)\n", nodes, pods, time.Since(t0).Round(time.Millisecond),
		float64(pods)/time.Since(t0).Seconds())

	// Restart the master with its scheduler.
	m.Stop()
	m.Args = without(m.Args, "--disable-scheduler")
	restart := time.Now()
	m.Start()
	m.WaitReady(2 * time.Minute)
	cs = protoClient(b, m)
	profileDone := profileMaster(b, m, fmt.Sprintf("scheduling-%d-backlog", nodes), 15*time.Second)
	cpu := sampleCPU(m.Pid())
	w := watchBindings(b, cs, ns, "backlog-", pods)
	res := w.wait(b, 10*time.Minute)
	cpu.stop()
	profileDone()
	first, last := res.first, res.last
	rate := float64(pods) / last.Sub(first).Seconds()
	b.ReportMetric(rate, "backlog-pods/s")
	used := cpu.between(first, last)
	b.ReportMetric(used.Seconds()*1000/float64(pods), "master-cpu-ms/pod")
	fmt.Printf("scheduling nodes=%d backlog (no kubelets): %d pods bound in %s: %.0f pods/s (first binding %s after the restart; peak 1s window %d pods); master CPU %.2f ms per pod, %.2f cores busy\n",
		nodes, pods, last.Sub(first).Round(time.Millisecond), rate, first.Sub(restart).Round(time.Millisecond), res.peak,
		used.Seconds()*1000/float64(pods), used.Seconds()/last.Sub(first).Seconds())

	if os.Getenv("SKIFF_BENCH_SCHED_ONLINE") == "0" {
		return
	}
	// Online, with the kubelets running: clear the backlog, restart the
	// hollow nodes, create as many pods again while the scheduler runs.
	zero := int64(0)
	fill(b, pods, func(i int) error {
		err := cs.CoreV1().Pods(ns).Delete(context.Background(), fmt.Sprintf("backlog-%d", i), metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
	h.Start()
	h.WaitReady(cs, 20*time.Minute)
	w = watchBindings(b, cs, ns, "online-", pods)
	profileDone = profileMaster(b, m, fmt.Sprintf("scheduling-%d-online", nodes), 15*time.Second)
	t0 = time.Now()
	fill(b, pods, func(i int) error {
		_, err := cs.CoreV1().Pods(ns).Create(context.Background(), benchPod(fmt.Sprintf("online-%d", i)), metav1.CreateOptions{})
		return err
	})
	created := time.Since(t0)
	res = w.wait(b, 10*time.Minute)
	profileDone()
	rate = float64(pods) / res.last.Sub(t0).Seconds()
	b.ReportMetric(rate, "online-pods/s")
	fmt.Printf("scheduling nodes=%d online (kubelets running the pods): %d pods created in %s (%.0f/s), all bound %s after the first create: %.0f pods/s (peak 1s window %d pods)\n",
		nodes, pods, created.Round(time.Millisecond), float64(pods)/created.Seconds(), res.last.Sub(t0).Round(time.Millisecond), rate, res.peak)
}

func protoClient(b *testing.B, m *testutil.Master) *kubernetes.Clientset {
	cfg := m.RESTConfig()
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return cs
}

func without(args []string, flag string) []string {
	var out []string
	for _, a := range args {
		if a != flag {
			out = append(out, a)
		}
	}
	return out
}

// benchPod is a small pod, as scheduler_perf's default pod: 100m CPU and
// 500Mi of memory requested.
func benchPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "sched-bench"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("500Mi"),
			}},
		}}},
	}
}

// bindingWatch records when each pod with a name prefix got its node.
type bindingWatch struct {
	mu     sync.Mutex
	bound  map[string]time.Time
	want   int
	done   chan struct{}
	cancel context.CancelFunc
}

type bindingResult struct {
	first, last time.Time
	peak        int // most bindings seen in one second
}

func watchBindings(b *testing.B, cs kubernetes.Interface, ns, prefix string, want int) *bindingWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &bindingWatch{bound: map[string]time.Time{}, want: want, done: make(chan struct{}), cancel: cancel}
	// The master may be busy (just restarted, binding): retry the list.
	var list *corev1.PodList
	if err := testutil.Poll(2*time.Minute, func() (err error) {
		list, err = cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for _, p := range list.Items {
		w.see(&p, now, prefix)
	}
	go func() {
		rv := list.ResourceVersion
		for ctx.Err() == nil {
			wi, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range wi.ResultChan() {
				if ev.Type == watch.Error {
					break
				}
				if p, ok := ev.Object.(*corev1.Pod); ok {
					rv = p.ResourceVersion
					if ev.Type != watch.Bookmark {
						w.see(p, time.Now(), prefix)
					}
				}
			}
			wi.Stop()
		}
	}()
	return w
}

func (w *bindingWatch) see(p *corev1.Pod, at time.Time, prefix string) {
	if p.Spec.NodeName == "" || !strings.HasPrefix(p.Name, prefix) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.bound[p.Name]; ok {
		return
	}
	w.bound[p.Name] = at
	if len(w.bound) == w.want {
		close(w.done)
	}
}

func (w *bindingWatch) wait(b *testing.B, timeout time.Duration) bindingResult {
	defer w.cancel()
	select {
	case <-w.done:
	case <-time.After(timeout):
		w.mu.Lock()
		n := len(w.bound)
		w.mu.Unlock()
		b.Fatalf("only %d of %d pods bound after %s", n, w.want, timeout)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	times := make([]time.Time, 0, len(w.bound))
	for _, t := range w.bound {
		times = append(times, t)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	res := bindingResult{first: times[0], last: times[len(times)-1]}
	for i, j := 0, 0; i < len(times); i++ {
		for times[i].Sub(times[j]) > time.Second {
			j++
		}
		res.peak = max(res.peak, i-j+1)
	}
	return res
}

// cpuSamples records a process's CPU time (user + system) every 50 ms,
// so that the CPU spent in a window known only afterwards can be told:
// a figure that, unlike pods/s, does not depend on what else the machine
// runs.
type cpuSamples struct {
	mu    sync.Mutex
	at    []time.Time
	used  []time.Duration
	close chan struct{}
	done  chan struct{}
}

func sampleCPU(pid int) *cpuSamples {
	c := &cpuSamples{close: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if d, ok := processCPU(pid); ok {
				c.mu.Lock()
				c.at, c.used = append(c.at, time.Now()), append(c.used, d)
				c.mu.Unlock()
			}
			select {
			case <-c.close:
				return
			case <-t.C:
			}
		}
	}()
	return c
}

func (c *cpuSamples) stop() {
	close(c.close)
	<-c.done
}

// between returns the CPU time used from the last sample at or before
// from to the first sample at or after to.
func (c *cpuSamples) between(from, to time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.at) == 0 {
		return 0
	}
	i := sort.Search(len(c.at), func(i int) bool { return c.at[i].After(from) })
	if i > 0 {
		i--
	}
	j := sort.Search(len(c.at), func(j int) bool { return !c.at[j].Before(to) })
	if j == len(c.at) {
		j--
	}
	return c.used[j] - c.used[i]
}

// processCPU reads utime + stime of a process from /proc (clock ticks of
// 10 ms, USER_HZ on Linux).
func processCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name may hold spaces: fields count from after ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}

// keepLogs copies a process log to SKIFF_BENCH_PPROF_DIR, when set.
func keepLogs(b *testing.B, path, name string) {
	dir := os.Getenv("SKIFF_BENCH_PPROF_DIR")
	if dir == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		b.Logf("keep log: %v", err)
	}
}
