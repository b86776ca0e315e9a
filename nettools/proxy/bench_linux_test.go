package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// BenchmarkRuleSync: syncs of 1,000 Services × 10 endpoints in a namespace
// of its own: "full" replaces the whole table (an agent's first sync);
// "change" is the sync after one Service's endpoints changed (the model is
// rebuilt from all objects, only the changed chains are sent).
func BenchmarkRuleSync(b *testing.B) {
	w := newWorld(b)
	var svcs []*corev1.Service
	var slices []*discoveryv1.EndpointSlice
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("s%d", i)
		svcs = append(svcs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: fmt.Sprintf("10.43.%d.%d", i/250, i%250+1),
				Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}})
		eps := map[string]string{}
		for j := 0; j < 10; j++ {
			eps[fmt.Sprintf("10.42.%d.%d", j, i%250+2)] = "node2"
		}
		slices = append(slices, sliceFor(name, corev1.ProtocolTCP, 8080, eps))
	}
	be := &nftBackend{netns: w.path("N"), balance: BalanceRandom}
	sync := func(b *testing.B) (time.Duration, time.Duration) {
		t0 := time.Now()
		m := Build(svcs, slices, Node{Name: "node1"})
		t1 := time.Now()
		if err := be.Sync(m); err != nil {
			b.Fatal(err)
		}
		return t1.Sub(t0), time.Since(t1)
	}
	report := func(b *testing.B, build, nft time.Duration) {
		b.ReportMetric(float64(build.Microseconds())/float64(b.N)/1000, "ms-build/op")
		b.ReportMetric(float64(nft.Microseconds())/float64(b.N)/1000, "ms-nftables/op")
	}
	b.Run("full", func(b *testing.B) {
		var build, nft time.Duration
		for i := 0; i < b.N; i++ {
			be.last = nil
			x, y := sync(b)
			build, nft = build+x, nft+y
		}
		report(b, build, nft)
	})
	b.Run("change", func(b *testing.B) {
		sync(b)
		var build, nft time.Duration
		for i := 0; i < b.N; i++ {
			// One endpoint of one Service moves.
			s := slices[i%len(slices)]
			s.Endpoints[0].Addresses[0] = fmt.Sprintf("10.42.200.%d", i%250+1)
			x, y := sync(b)
			build, nft = build+x, nft+y
		}
		report(b, build, nft)
	})
}

// inNetns runs fn on an OS thread of its own inside the namespace; the
// thread is dropped afterwards.
func inNetns(path string, fn func()) error {
	errCh := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errCh <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errCh <- err
			return
		}
		fn()
		errCh <- nil
	}()
	return <-errCh
}

// BenchmarkServiceThroughput: requests per second (connect, read the
// answer, close) from the client namespace with 8 concurrent clients,
// straight to the 3 endpoints' addresses and through a cluster IP in
// each proxy mode.
func BenchmarkServiceThroughput(b *testing.B) {
	w := newWorld(b)
	api := apiservertest.NewServer(b, apiservertest.Options{Admission: true})
	cfg := api.RESTConfig()
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	// The remote endpoint is routed through N.
	if err := (&nftBackend{netns: w.path("N")}).enableForwarding(); err != nil {
		b.Fatal(err)
	}
	direct := []string{"10.42.0.3:8080", "10.42.0.4:8080", "10.42.1.2:8080"}
	w.serve("E", direct[0])
	w.serve("E", direct[1])
	w.serve("R", direct[2])
	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(ctx, sliceFor("web", corev1.ProtocolTCP, 8080,
		map[string]string{"10.42.0.3": "node1", "10.42.0.4": "node1", "10.42.1.2": "node2"}), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	vip := netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), 80).String()
	run := func(b *testing.B, targets []string) {
		const clients = 8
		var next atomic.Int64
		var failed atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = inNetns(w.path("C"), func() {
					buf := make([]byte, 64)
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						conn, err := net.DialTimeout("tcp4", targets[int(i)%len(targets)], 2*time.Second)
						if err != nil {
							failed.Add(1)
							continue
						}
						_, _ = io.ReadFull(conn, buf[:len("10.42.0.3:8080")])
						conn.Close()
					}
				})
			}()
		}
		wg.Wait()
		el := time.Since(start)
		b.ReportMetric(float64(b.N)/el.Seconds(), "req/s")
		if f := failed.Load(); f > 0 {
			b.Fatalf("%d of %d requests failed", f, b.N)
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, direct) })
	for _, mode := range []Mode{ModeNFTables, ModeUserspace} {
		b.Run(string(mode), func(b *testing.B) {
			p, stop := startProxy(b, w, cs, mode)
			deadline := time.Now().Add(15 * time.Second)
			for {
				if _, err := w.get("C", "tcp4", vip); err == nil && p.LastSync().Endpoints == 3 {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("service not reachable")
				}
				time.Sleep(20 * time.Millisecond)
			}
			run(b, []string{vip})
			stop()
		})
	}
}
