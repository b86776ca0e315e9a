package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

func readyStatus(cs kubernetes.Interface, name string) (corev1.ConditionStatus, string) {
	n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return "", ""
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status, c.Message
		}
	}
	return "", ""
}

// gossipBenchCluster: a master without an agent, victims (one hollow node
// per process, each on its own address, gossip on 7946 as a real agent,
// so that a restarted victim comes back under the same address and
// refutes a suspicion at once) and, with background > 0, that many more
// hollow nodes spread over SKIFF_BENCH_GOSSIP_PROCS processes, all gossip
// members.
func gossipBenchCluster(b *testing.B, victims, background int) (*testutil.Master, *kubernetes.Clientset, []*testutil.HollowNodes) {
	// SKIFF_BENCH_GOSSIP_PROFILE=wan measures the WAN profile.
	var profile []string
	if p := os.Getenv("SKIFF_BENCH_GOSSIP_PROFILE"); p != "" {
		profile = []string{"--gossip-profile", p}
	}
	m := testutil.NewMaster(b, testutil.MasterOptions{Name: "gossip-bench", Args: profile})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	// The background members are spread over SKIFF_BENCH_GOSSIP_PROCS
	// processes (5), each on its own address, as real nodes are spread over
	// machines: one process holding them all starves them under load.
	procs := max(1, min(background, envInt("SKIFF_BENCH_GOSSIP_PROCS", 5)))
	var bgs []*testutil.HollowNodes
	for p := range procs {
		n := background / procs
		if p < background%procs {
			n++
		}
		if n == 0 {
			continue
		}
		bg := testutil.NewHollowNodes(b, testutil.HollowOptions{Count: n, Prefix: fmt.Sprintf("bg%d", p), Server: m.URL(), Kubeconfig: m.Kubeconfig(),
			IP: testutil.LoopbackAddr(b), Args: append([]string{"--node-lease-duration", "20s", "--node-status-interval", "10s"}, profile...)})
		bg.Start()
		bgs = append(bgs, bg)
	}
	for _, bg := range bgs {
		bg.WaitReady(cs, 5*time.Minute)
	}
	var vs []*testutil.HollowNodes
	for i := 0; i < victims; i++ {
		h := testutil.NewHollowNodes(b, testutil.HollowOptions{Count: 1, Prefix: fmt.Sprintf("v%d", i), Server: m.URL(),
			Kubeconfig: m.Kubeconfig(), IP: testutil.LoopbackAddr(b), Args: append([]string{"--gossip-port", "7946"}, profile...)})
		h.Start()
		vs = append(vs, h)
	}
	for _, h := range vs {
		h.WaitReady(cs, 2*time.Minute)
	}
	return m, cs, vs
}

func waitGossipAlive(b *testing.B, m *testutil.Master, name string) {
	admin := m.HTTPClient()
	testutil.WaitFor(b, 60*time.Second, name+" alive in gossip", func() error {
		ms, err := testutil.GossipMembers(m, admin)
		if err != nil {
			return err
		}
		if ms[name].Status != "alive" {
			return fmt.Errorf("%+v", ms[name])
		}
		return nil
	})
}

// BenchmarkGossipDetection: kill -9 of an agent → its Node Ready=Unknown
// (gossip, LAN profile), over SKIFF_BENCH_KILLS kills (20), with three
// agents and, in the second case, 100 more hollow nodes as members.
// Between kills the victim, back alive in the master's view, is left
// SKIFF_BENCH_SETTLE (3s) plus a random 0-1s.
func BenchmarkGossipDetection(b *testing.B) {
	kills := envInt("SKIFF_BENCH_KILLS", 20)
	settle := envDuration("SKIFF_BENCH_SETTLE", 3*time.Second)
	for _, bg := range []int{0, envInt("SKIFF_BENCH_GOSSIP_NODES", 100)} {
		b.Run(fmt.Sprintf("nodes=%d", 3+bg), func(b *testing.B) {
			m, cs, vs := gossipBenchCluster(b, 3, bg)
			for _, v := range vs {
				waitGossipAlive(b, m, v.NodeName(0))
			}
			var lat, verdict []time.Duration
			falseUnknown, byLease := 0, 0
			admin := m.HTTPClient()
			for k := 0; k < kills; k++ {
				v := vs[k%len(vs)]
				name := v.NodeName(0)
				start := time.Now()
				v.Kill()
				var sawFailed time.Duration
				testutil.WaitFor(b, 3*time.Minute, name+" Unknown", func() error {
					if sawFailed == 0 {
						if ms, err := testutil.GossipMembers(m, admin); err == nil && ms[name].Status == "failed" {
							sawFailed = time.Since(start)
						}
					}
					st, msg := readyStatus(cs, name)
					if st != corev1.ConditionUnknown {
						return fmt.Errorf("ready %s", st)
					}
					if !strings.HasPrefix(msg, "gossip:") {
						byLease++ // the Lease grace period came first
					}
					return nil
				})
				lat = append(lat, time.Since(start))
				if sawFailed == 0 {
					sawFailed = time.Since(start)
				}
				verdict = append(verdict, sawFailed)
				for _, o := range vs {
					if o != v {
						if st, _ := readyStatus(cs, o.NodeName(0)); st != corev1.ConditionTrue {
							falseUnknown++
						}
					}
				}
				v.Start()
				testutil.WaitFor(b, 60*time.Second, name+" Ready", func() error {
					if st, _ := readyStatus(cs, name); st != corev1.ConditionTrue {
						return fmt.Errorf("ready %s", st)
					}
					return nil
				})
				waitGossipAlive(b, m, name)
				// Let every member hear it alive, and kill at a random
				// point of the probe cycle: a node that just rejoined is
				// not yet probed by members that still think it dead.
				time.Sleep(settle + time.Duration(rand.Int64N(int64(time.Second))))
			}
			b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
			b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
			b.ReportMetric(ms(percentile(lat, 1)), "max-ms")
			b.ReportMetric(float64(falseUnknown), "other-nodes-not-ready")
			b.ReportMetric(float64(byLease), "marked-by-lease")
			b.ReportMetric(ms(percentile(verdict, 0.50)), "gossip-p50-ms")
			b.ReportMetric(ms(percentile(verdict, 0.99)), "gossip-p99-ms")
			b.Logf("kill -9 → Node Unknown: %v", lat)
			b.Logf("kill -9 → failed in the master's gossip view: %v", verdict)
		})
	}
}

// BenchmarkGossipReschedule: kill -9 of the agent running all 10 replicas
// of a Deployment (tolerating unreachable for 5 s) → 10 replicas Running
// on the other nodes.
func BenchmarkGossipReschedule(b *testing.B) {
	rounds := envInt("SKIFF_BENCH_ROUNDS", 5)
	m, cs, vs := gossipBenchCluster(b, 3, 0)
	_ = m
	ctx := context.Background()
	var lat []time.Duration
	var lastTaint time.Time
	for r := 0; r < rounds; r++ {
		victim := vs[r%len(vs)]
		vname := victim.NodeName(0)
		// Only the victim is schedulable while the replicas start.
		for _, o := range vs {
			if o != victim {
				setUnschedulable(b, cs, o.NodeName(0), true)
			}
		}
		name := fmt.Sprintf("resched-%d", r)
		replicas, secs := int32(10), int64(5)
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "c", Image: "example.com/app:1"}},
					Tolerations: []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists,
						Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs}}}}}}
		if _, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		waitReplicas(b, cs, name, 10, func(node string) bool { return node == vname })
		for _, o := range vs {
			if o != victim {
				setUnschedulable(b, cs, o.NodeName(0), false)
			}
		}
		// The zone taints one node NoExecute per 10 s (the default
		// --node-eviction-rate 0.1, as Kubernetes): a kill sooner after
		// the last taint would measure that rate, not a lone failure.
		if d := time.Until(lastTaint.Add(10*time.Second + 500*time.Millisecond)); !lastTaint.IsZero() && d > 0 {
			time.Sleep(d)
		}
		start := time.Now()
		tl := watchReschedule(b, cs, name, vname, start)
		victim.Kill()
		waitReplicas(b, cs, name, 10, func(node string) bool { return node != vname })
		lat = append(lat, time.Since(start))
		b.Logf("round %d: %s", r, tl.done())
		lastTaint = start.Add(tl.marks["taint"])
		if err := cs.AppsV1().Deployments("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
		victim.Start()
		testutil.WaitFor(b, 60*time.Second, vname+" Ready", func() error {
			if st, _ := readyStatus(cs, vname); st != corev1.ConditionTrue {
				return fmt.Errorf("ready %s", st)
			}
			return nil
		})
		waitGossipAlive(b, m, vname)
		testutil.WaitFor(b, 60*time.Second, vname+" untainted", func() error {
			n, err := cs.CoreV1().Nodes().Get(ctx, vname, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(n.Spec.Taints) > 0 {
				return fmt.Errorf("taints %+v", n.Spec.Taints)
			}
			return nil
		})
	}
	b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 1)), "max-ms")
	b.Logf("kill -9 → 10 replicas running elsewhere: %v", lat)
}

func setUnschedulable(b *testing.B, cs kubernetes.Interface, name string, v bool) {
	testutil.WaitFor(b, 30*time.Second, "cordon "+name, func() error {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Spec.Unschedulable = v
		_, err = cs.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
		return err
	})
}

func waitReplicas(b *testing.B, cs kubernetes.Interface, app string, n int, onNode func(string) bool) {
	testutil.WaitFor(b, 2*time.Minute, fmt.Sprintf("%d replicas of %s running", n, app), func() error {
		pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return err
		}
		count := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && onNode(p.Spec.NodeName) {
				count++
			}
		}
		if count < n {
			return fmt.Errorf("%d running", count)
		}
		return nil
	})
}

// BenchmarkGossipFalsePositives: a master and SKIFF_BENCH_GOSSIP_VICTIMS
// agents (3, each its own process) plus SKIFF_BENCH_GOSSIP_NODES hollow
// nodes in one process (0), all gossip members, while other processes
// keep every CPU busy for SKIFF_BENCH_SATURATE (10m): every second the
// benchmark lists the Nodes and counts those not Ready, and asks the
// master's gossip view for members not alive. Goal: none.
func BenchmarkGossipFalsePositives(b *testing.B) {
	dur := envDuration("SKIFF_BENCH_SATURATE", 10*time.Minute)
	m, cs, vs := gossipBenchCluster(b, envInt("SKIFF_BENCH_GOSSIP_VICTIMS", 3), envInt("SKIFF_BENCH_GOSSIP_NODES", 0))
	for _, v := range vs {
		waitGossipAlive(b, m, v.NodeName(0))
	}
	// The CPU hogs: one busy shell loop per CPU, at the agents' priority.
	for i := 0; i < runtime.NumCPU(); i++ {
		hog := exec.Command("sh", "-c", "while :; do :; done")
		if err := hog.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = hog.Process.Kill(); _ = hog.Wait() })
	}
	h := sampleHealth(b, m, cs, dur)
	b.ReportMetric(float64(len(h.notReady)), "nodes-not-ready")
	b.ReportMetric(float64(len(h.gossipDown)), "members-not-alive")
	b.ReportMetric(float64(h.samples), "samples")
	b.Logf("saturated %v: %d samples (%d lists failed); nodes seen not Ready (seconds): %v; gossip members seen not alive (seconds): %v",
		dur, h.samples, h.missed, h.notReady, h.gossipDown)
}

// health is what sampleHealth saw.
type health struct {
	notReady   map[string]int // node → seconds seen not Ready
	gossipDown map[string]int // member → seconds seen not alive
	samples    int
	missed     int // samples whose Node list failed
}

// sampleHealth lists the Nodes and asks the master's gossip view for
// members not alive every second for dur.
func sampleHealth(b *testing.B, m *testutil.Master, cs kubernetes.Interface, dur time.Duration) health {
	admin := m.HTTPClient()
	h := health{notReady: map[string]int{}, gossipDown: map[string]int{}}
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		time.Sleep(time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		cancel()
		if err != nil {
			h.missed++
			continue
		}
		h.samples++
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
					h.notReady[n.Name]++
				}
			}
		}
		if ms, err := testutil.GossipMembers(m, admin); err == nil {
			for name, mem := range ms {
				if mem.Status != "alive" {
					h.gossipDown[name]++
				}
			}
		}
	}
	return h
}

func waitReady(b *testing.B, cs kubernetes.Interface, name string) {
	testutil.WaitFor(b, 2*time.Minute, name+" Ready", func() error {
		if st, _ := readyStatus(cs, name); st != corev1.ConditionTrue {
			return fmt.Errorf("ready %s", st)
		}
		return nil
	})
}

// rescheduleTimeline records, from watches, when each step after the kill
// happened: the Node Unknown, its unreachable NoExecute taint, the first
// and last eviction of a pod on the victim, the last replacement
// created, bound and Running.
type rescheduleTimeline struct {
	start  time.Time
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	marks  map[string]time.Duration
}

func watchReschedule(b *testing.B, cs kubernetes.Interface, app, victim string, start time.Time) *rescheduleTimeline {
	ctx, cancel := context.WithCancel(context.Background())
	tl := &rescheduleTimeline{start: start, cancel: cancel, marks: map[string]time.Duration{}}
	nw, err := cs.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + victim})
	if err != nil {
		b.Fatal(err)
	}
	pw, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		b.Fatal(err)
	}
	tl.wg.Add(2)
	go func() {
		defer tl.wg.Done()
		for ev := range nw.ResultChan() {
			n, ok := ev.Object.(*corev1.Node)
			if !ok {
				continue
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionUnknown {
					tl.first("node Unknown")
				}
			}
			for _, t := range n.Spec.Taints {
				if t.Key == corev1.TaintNodeUnreachable && t.Effect == corev1.TaintEffectNoExecute {
					tl.first("taint")
				}
			}
		}
	}()
	go func() {
		defer tl.wg.Done()
		seen := map[string]bool{}
		for ev := range pw.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			switch {
			case p.Spec.NodeName == victim && p.DeletionTimestamp != nil:
				tl.first("first eviction")
				tl.last("last eviction")
			case p.Spec.NodeName != victim:
				if !seen[p.Name] {
					seen[p.Name] = true
					tl.last("last replacement created")
				}
				if p.Spec.NodeName != "" {
					tl.lastOnce(p.Name+"/bound", "last replacement bound")
				}
				if p.Status.Phase == corev1.PodRunning {
					tl.lastOnce(p.Name+"/running", "last replacement Running")
				}
			}
		}
	}()
	return tl
}

func (tl *rescheduleTimeline) first(what string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if _, ok := tl.marks[what]; !ok {
		tl.marks[what] = time.Since(tl.start)
	}
}

func (tl *rescheduleTimeline) last(what string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.marks[what] = time.Since(tl.start)
}

// lastOnce moves the mark what to now the first time key is seen.
func (tl *rescheduleTimeline) lastOnce(key, what string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if _, ok := tl.marks[key]; !ok {
		tl.marks[key] = 0
		tl.marks[what] = time.Since(tl.start)
	}
}

// done stops the watches and formats the steps in order.
func (tl *rescheduleTimeline) done() string {
	tl.cancel()
	tl.wg.Wait()
	var out []string
	for _, k := range []string{"node Unknown", "taint", "first eviction", "last eviction", "last replacement created", "last replacement bound", "last replacement Running"} {
		if d, ok := tl.marks[k]; ok {
			out = append(out, fmt.Sprintf("%s %.2fs", k, d.Seconds()))
		}
	}
	return strings.Join(out, ", ")
}
