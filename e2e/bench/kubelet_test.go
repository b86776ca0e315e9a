package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
	rtestutil "github.com/skiff-io/skiff/runtime/testutil"
)

// Kubelet benchmarks (issue 5): pod startup latency, create → Running as
// seen through a watch, on one node with the image present; and the
// agent's RSS with 0 and 50 running pods. runtime=fake is a hollow node
// (the kubelet and control plane alone); runtime=libcontainer runs real
// containers (root, in a test network namespace).

const benchImage = "skiff.bench/busybox:1"

type kubeletBench struct {
	master *testutil.Master
	agent  *testutil.Agent
	cs     kubernetes.Interface
	node   string
}

func startKubeletBench(b *testing.B, runtime string) *kubeletBench {
	b.Helper()
	var (
		m     *testutil.Master
		aopts = testutil.AgentOptions{Name: "bench-node", Runtime: runtime}
	)
	if runtime == "libcontainer" {
		if os.Geteuid() != 0 {
			b.Skip("real containers need root")
		}
		if ok, why := testutil.HaveNetns(); !ok {
			b.Skip(why)
		}
		if _, err := exec.LookPath("nsenter"); err != nil {
			b.Skip("nsenter is not installed")
		}
		rtestutil.Busybox(b)
		tn := testutil.NewTestNet(b, 2)
		h := tn.Hosts()
		m = testutil.NewMaster(b, testutil.MasterOptions{Name: "m1", IP: h[0].IP, Netns: h[0].Netns})
		aopts.IP, aopts.Netns = h[1].IP, h[1].Netns
	} else {
		m = testutil.NewMaster(b, testutil.MasterOptions{Name: "m1"})
	}
	m.Start()
	m.WaitReady(30 * time.Second)
	aopts.Server, aopts.Token = m.URL(), m.AgentToken()
	if os.Getenv("SKIFF_BENCH_DEBUG") != "" {
		aopts.Args = append(aopts.Args, "--log-level", "debug")
	}
	a := testutil.NewAgent(b, aopts)
	if runtime == "libcontainer" {
		img, err := rtestutil.BusyboxImage(rtestutil.BusyboxPath, v1.Config{Cmd: []string{"sh"}})
		if err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(a.ImageDir(), 0o700); err != nil {
			b.Fatal(err)
		}
		if err := rtestutil.WriteDockerArchive(filepath.Join(a.ImageDir(), "busybox.tar"), benchImage, img); err != nil {
			b.Fatal(err)
		}
	}
	a.Start()
	cfg := m.RESTConfig()
	cfg.QPS, cfg.Burst = 1000, 1000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	kb := &kubeletBench{master: m, agent: a, cs: cs, node: "bench-node"}
	testutil.WaitFor(b, 60*time.Second, "node Ready", func() error {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), kb.node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && n.Spec.PodCIDR != "" {
				return nil
			}
		}
		return fmt.Errorf("not ready")
	})
	b.Cleanup(func() {
		// Containers outlive the agent: it must run to remove them.
		if !a.Running() {
			a.Start()
		}
		kb.deleteAll(b)
		if b.Failed() || os.Getenv("SKIFF_BENCH_DEBUG") != "" {
			if log, err := os.ReadFile(a.LogPath()); err == nil {
				_ = os.WriteFile(filepath.Join(os.TempDir(), "skiff-kubelet-bench-agent.log"), log, 0o644)
			}
		}
	})
	return kb
}

func (kb *kubeletBench) pod(name string) *corev1.Pod {
	grace := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"bench": "startup"}},
		Spec: corev1.PodSpec{NodeName: kb.node, TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{{
			Name: "main", Image: benchImage, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sleep", "3600"},
		}}},
	}
}

// runningWatch reports, for each pod name, when the watch first saw it
// Running.
type runningWatch struct {
	mu      sync.Mutex
	running map[string]time.Time
	cond    *sync.Cond
	stop    func()
}

// watchRunning watches the benchmark's pods, watching again from the
// last resourceVersion whenever a watch ends (the client's 30 s timeout).
func (kb *kubeletBench) watchRunning(b *testing.B) *runningWatch {
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWatch{running: map[string]time.Time{}, stop: cancel}
	rw.cond = sync.NewCond(&rw.mu)
	list, err := kb.cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "bench=startup"})
	if err != nil {
		b.Fatal(err)
	}
	rv := list.ResourceVersion
	events := make(chan watch.Event)
	go func() {
		defer close(events)
		for ctx.Err() == nil {
			w, err := kb.cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "bench=startup", ResourceVersion: rv})
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				if p, ok := ev.Object.(*corev1.Pod); ok {
					rv = p.ResourceVersion
				}
				select {
				case events <- ev:
				case <-ctx.Done():
					w.Stop()
					return
				}
			}
		}
	}()
	go func() {
		for ev := range events {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.Status.Phase != corev1.PodRunning {
				continue
			}
			now := time.Now()
			rw.mu.Lock()
			if _, seen := rw.running[p.Name]; !seen {
				rw.running[p.Name] = now
				rw.cond.Broadcast()
			}
			rw.mu.Unlock()
		}
	}()
	return rw
}

func (rw *runningWatch) wait(b *testing.B, kb *kubeletBench, names []string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	go func() {
		time.Sleep(timeout)
		rw.mu.Lock()
		rw.cond.Broadcast()
		rw.mu.Unlock()
	}()
	rw.mu.Lock()
	defer rw.mu.Unlock()
	for {
		missing := 0
		for _, n := range names {
			if _, ok := rw.running[n]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d pods not Running after %s\n--- agent log ---\n%s", missing, len(names), timeout, kb.agent.LogTail(60))
		}
		rw.cond.Wait()
	}
}

func (kb *kubeletBench) deleteAll(b testing.TB) {
	zero := int64(0)
	ctx := context.Background()
	_ = kb.cs.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{LabelSelector: "bench=startup"})
	_ = testutil.Poll(120*time.Second, func() error {
		l, err := kb.cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "bench=startup"})
		if err != nil {
			return err
		}
		if len(l.Items) > 0 {
			return fmt.Errorf("%d pods left", len(l.Items))
		}
		// ...and the agent removed their containers and sandboxes.
		for _, d := range []string{"containers", "sandboxes", "pods"} {
			if ents, _ := os.ReadDir(filepath.Join(kb.agent.DataDir, "agent", d)); len(ents) > 0 {
				return fmt.Errorf("%d %s left on the node", len(ents), d)
			}
		}
		return nil
	})
}

// rssMiB returns a process's VmRSS.
func rssMiB(pid int) float64 {
	rss, _ := rssParts(pid)
	return rss
}

// rssParts returns a process's VmRSS and its anonymous part (RssAnon: the
// rest is the binary's file pages, shared with every skiff process).
func rssParts(pid int) (rss, anon float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "RssAnon:":
			anon = kb / 1024
		}
	}
	return rss, anon
}

func (kb *kubeletBench) create(b *testing.B, name string) {
	if _, err := kb.cs.CoreV1().Pods("default").Create(context.Background(), kb.pod(name), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatalf("create %s: %v", name, err)
	}
}

// BenchmarkPodStartup: 100 pods created one by one (each waits for the
// previous to be Running), then 100 at once; and the agent's RSS with 0
// and 50 running pods.
func BenchmarkPodStartup(b *testing.B) {
	for _, rt := range []string{"fake", "libcontainer"} {
		b.Run("runtime="+rt, func(b *testing.B) {
			kb := startKubeletBench(b, rt)
			n := 100
			if v, err := strconv.Atoi(os.Getenv("SKIFF_BENCH_PODS")); err == nil && v > 0 {
				n = v
			}
			time.Sleep(2 * time.Second) // let the agent settle before measuring its idle RSS
			idle, idleAnon := rssParts(kb.agent.Pid())

			rw := kb.watchRunning(b)
			defer rw.stop()
			var seq []time.Duration
			for i := 0; i < n; i++ {
				name := fmt.Sprintf("seq-%d", i)
				start := time.Now()
				kb.create(b, name)
				rw.wait(b, kb, []string{name}, 60*time.Second)
				rw.mu.Lock()
				seq = append(seq, rw.running[name].Sub(start))
				rw.mu.Unlock()
			}
			kb.deleteAll(b)

			// 50 at once for the RSS figure, then 50 more: 100 at once.
			var names []string
			starts := map[string]time.Time{}
			var mu sync.Mutex
			burst := func(prefix string, from, to int) {
				var wg sync.WaitGroup
				sem := make(chan struct{}, 16)
				for i := from; i < to; i++ {
					name := fmt.Sprintf("%s-%d", prefix, i)
					names = append(names, name)
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						t := time.Now()
						mu.Lock()
						starts[name] = t
						mu.Unlock()
						kb.create(b, name)
					}()
				}
				wg.Wait()
			}
			burst("fifty", 0, 50)
			rw.wait(b, kb, names, 2*time.Minute)
			time.Sleep(2 * time.Second)
			rss50, rss50Anon := rssParts(kb.agent.Pid())
			kb.deleteAll(b)

			names, starts = nil, map[string]time.Time{}
			t0 := time.Now()
			burst("hundred", 0, n)
			rw.wait(b, kb, names, 2*time.Minute)
			var all []time.Duration
			last := t0
			rw.mu.Lock()
			for _, name := range names {
				if rw.running[name].After(last) {
					last = rw.running[name]
				}
				all = append(all, rw.running[name].Sub(starts[name]))
			}
			rw.mu.Unlock()
			total := last.Sub(t0)

			b.ReportMetric(ms(percentile(seq, 0.5)), "seq-p50-ms")
			b.ReportMetric(ms(percentile(seq, 0.99)), "seq-p99-ms")
			b.ReportMetric(ms(total), "burst-all-running-ms")
			b.ReportMetric(ms(percentile(all, 0.5)), "burst-p50-ms")
			b.ReportMetric(ms(percentile(all, 0.99)), "burst-p99-ms")
			b.ReportMetric(idle, "agent-rss-0pods-MiB")
			b.ReportMetric(rss50, "agent-rss-50pods-MiB")
			b.ReportMetric(idleAnon, "agent-anon-0pods-MiB")
			b.ReportMetric(rss50Anon, "agent-anon-50pods-MiB")
			b.Logf("runtime=%s: %d pods one by one: p50 %.1f ms p99 %.1f ms; %d at once: all Running after %.0f ms (p50 %.1f ms, p99 %.1f ms); agent RSS %.1f MiB idle (%.1f anonymous), %.1f MiB with 50 pods (%.1f anonymous)",
				rt, n, ms(percentile(seq, 0.5)), ms(percentile(seq, 0.99)), n, ms(total), ms(percentile(all, 0.5)), ms(percentile(all, 0.99)), idle, idleAnon, rss50, rss50Anon)
		})
	}
}
