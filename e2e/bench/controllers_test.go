package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// Controllers benchmark (issue 6): a 1,000-replica Deployment from create
// to every pod Running on 100 hollow nodes (one `skiff agent --runtime
// fake --hollow-nodes 100` process), one master running the scheduler and
// the controllers. SKIFF_BENCH_DEPLOY_REPLICAS and _NODES change the
// sizes.
func BenchmarkDeployment1000(b *testing.B) {
	replicas := envInt("SKIFF_BENCH_DEPLOY_REPLICAS", 1000)
	nodes := envInt("SKIFF_BENCH_DEPLOY_NODES", 100)
	m := testutil.NewMaster(b, testutil.MasterOptions{Name: "deploy"})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	h := testutil.NewHollowNodes(b, testutil.HollowOptions{Count: nodes, Server: m.URL(), Kubeconfig: m.Kubeconfig(),
		Args: []string{"--node-lease-duration", "40s", "--node-status-interval", "20s"}})
	h.Start()
	h.WaitReady(cs, 3*time.Minute)
	ctx := context.Background()

	var (
		mu               sync.Mutex
		created, running = map[types.UID]bool{}, map[types.UID]bool{}
		bound            = map[types.UID]bool{}
		tCreated, tBound time.Time
		tRunning         time.Time
		done             = make(chan struct{})
		closed           bool
	)
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			mu.Lock()
			now := time.Now()
			if !created[p.UID] {
				created[p.UID] = true
				if len(created) == replicas {
					tCreated = now
				}
			}
			if p.Spec.NodeName != "" && !bound[p.UID] {
				bound[p.UID] = true
				if len(bound) == replicas {
					tBound = now
				}
			}
			if p.Status.Phase == corev1.PodRunning && !running[p.UID] {
				running[p.UID] = true
				if len(running) == replicas && !closed {
					tRunning, closed = now, true
					close(done)
				}
			}
			mu.Unlock()
		}
	}()
	n := int32(replicas)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "bench"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "example.com/bench:1"}}},
			},
		},
	}
	b.ResetTimer()
	start := time.Now()
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		mu.Lock()
		b.Fatalf("timed out: %d created, %d bound, %d running", len(created), len(bound), len(running))
	}
	var available time.Duration
	testutil.WaitFor(b, 5*time.Minute, "deployment available", func() error {
		d, err := cs.AppsV1().Deployments("default").Get(ctx, "bench", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.AvailableReplicas != n || d.Status.ObservedGeneration < d.Generation {
			return fmt.Errorf("status %+v", d.Status)
		}
		available = time.Since(start)
		return nil
	})
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	secs := func(t time.Time) float64 { return t.Sub(start).Seconds() }
	b.ReportMetric(secs(tCreated), "s-all-created")
	b.ReportMetric(secs(tBound), "s-all-bound")
	b.ReportMetric(secs(tRunning), "s-all-running")
	b.ReportMetric(available.Seconds(), "s-deployment-available")
	b.Logf("%d replicas on %d hollow nodes: all created %.1fs, bound %.1fs, Running %.1fs, deployment available (status) %.1fs",
		replicas, nodes, secs(tCreated), secs(tBound), secs(tRunning), available.Seconds())
}
