package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/e2e/testutil"
	"github.com/skiff-io/skiff/nettools"
	rtestutil "github.com/skiff-io/skiff/runtime/testutil"
)

// BenchmarkIngress (issue 17): HTTP requests per second and their p99
// latency through the node's built-in ingress controller to a pod, against
// the same requests straight to the pod and through nginx (the peer a
// user would pick instead: a plain reverse proxy as ingress-nginx
// configures it, on the node's address in the node's namespace, see
// startNginx), in one run. The server is the test's (net/http listening
// inside the pod's network namespace, a 2-byte answer); the clients are 8
// concurrent ones in the node's host namespace, for SKIFF_BENCH_DURATION
// (3 s) per target, the targets taking turns of 500 ms. Without nginx
// installed the nginx figures are skipped (logged), the others still run.
func BenchmarkIngress(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("real pods need root")
	}
	if ok, why := testutil.HaveNetns(); !ok {
		b.Skip(why)
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		b.Skip("nsenter is not installed")
	}
	rtestutil.Busybox(b)
	img, err := rtestutil.BusyboxImage(rtestutil.BusyboxPath, v1.Config{Cmd: []string{"sh"}})
	if err != nil {
		b.Fatal(err)
	}
	archive := filepath.Join(b.TempDir(), "busybox.tar")
	if err := rtestutil.WriteDockerArchive(archive, benchImage, img); err != nil {
		b.Fatal(err)
	}
	dur := envDuration("SKIFF_BENCH_DURATION", 3*time.Second)
	c := testutil.NewNetCluster(b, testutil.NetClusterOptions{Nodes: 1, ImageArchives: []string{archive}})
	grace := int64(1)
	pod := c.RunPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: c.NodeName(0), TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "main", Image: benchImage, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}}}}})
	var l net.Listener
	if err := c.InPod(pod, func() (err error) {
		l, err = net.Listen("tcp4", net.JoinHostPort(pod.Status.PodIP, "0"))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { srv.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	ctx := context.Background()
	if _, err := c.CS.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(int32(port))}}}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	prefix := networkingv1.PathTypePrefix
	if _, err := c.CS.NetworkingV1().Ingresses("default").Create(ctx, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "web.example.com", IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web",
					Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}}}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	nodeNS := c.NodeNetns(0)
	direct := "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port)) + "/"
	viaIngress := "http://" + c.NodeIP(0) + "/"
	testutil.WaitFor(b, 60*time.Second, "the ingress answers", func() error {
		_, err := load(nodeNS, viaIngress, 1, 10*time.Millisecond, false)
		return err
	})
	viaNginx, nginxPids := "", []int(nil)
	if bin := nginxBinary(); bin != "" {
		viaNginx, nginxPids = startNginx(b, bin, nodeNS, c.NodeIP(0), net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port)))
		if _, err := load(nodeNS, viaNginx, 1, 10*time.Millisecond, false); err != nil {
			b.Fatalf("through nginx: %v", err)
		}
	} else {
		b.Logf("skipping the nginx figures: %s", noNginx)
	}
	urls, names := []string{direct, viaIngress}, []string{"direct", "ingress"}
	// The CPU each proxy's processes use per request it serves: node 0's
	// skiff (the controller runs in it) and nginx's master and workers,
	// with their descendants, less what they use while the clients go
	// straight to the pod.
	procs := [][]int{{c.Master.Pid()}}
	if viaNginx != "" {
		urls, names = append(urls, viaNginx), append(names, "nginx")
		procs = append(procs, nginxPids)
	}
	// keepalive: 8 clients on persistent connections (the proxy's own
	// cost); new-conn: a new TCP connection per request, as curl or wget
	// in a loop (the proxy keeps its pooled connections to the pod). The
	// targets take turns in slices of 500 ms (the order rotating), so
	// that the other work on shared CPUs weighs on each alike.
	for _, mode := range []string{"keepalive", "new-conn"} {
		b.Run(mode, func(b *testing.B) {
			fresh := mode == "new-conn"
			for range b.N {
				res, cpu, err := interleaved(nodeNS, urls, procs, 8, dur, 500*time.Millisecond, fresh)
				if err != nil {
					b.Fatal(err)
				}
				for i, p := range cpu {
					// procs[i] is the proxy of urls[i+1]; urls[0] is direct.
					busy := (p[i+1] - p[0]).Seconds()
					b.ReportMetric(busy*1e6/(res[i+1].rps*dur.Seconds()), names[i+1]+"-cpu-µs/req")
				}
				for i, r := range res {
					b.ReportMetric(r.rps, names[i]+"-req/s")
					b.ReportMetric(float64(r.p99.Microseconds()), names[i]+"-p99-µs")
				}
				b.ReportMetric(res[1].rps/res[0].rps, "ingress/direct")
				if len(res) > 2 {
					b.ReportMetric(res[2].rps/res[0].rps, "nginx/direct")
					b.ReportMetric(res[1].rps/res[2].rps, "ingress/nginx")
				}
			}
		})
	}
}

// interleaved loads each of urls for dur in all, in turns of slice, and
// returns their results in the order of urls, and the CPU time each
// group of procs used while each url was loaded (cpu[g][i]).
func interleaved(ns string, urls []string, procs [][]int, n int, dur, slice time.Duration, fresh bool) ([]loadResult, [][]time.Duration, error) {
	lats := make([][]time.Duration, len(urls))
	cpu := make([][]time.Duration, len(procs))
	for g := range cpu {
		cpu[g] = make([]time.Duration, len(urls))
	}
	rounds := max(1, int(dur/slice))
	for round := range rounds {
		for k := range urls {
			i := (round + k) % len(urls)
			before := make([]time.Duration, len(procs))
			for g, pids := range procs {
				before[g] = cpuTime(pids)
			}
			l, err := run(ns, urls[i], n, dur/time.Duration(rounds), fresh)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", urls[i], err)
			}
			for g, pids := range procs {
				cpu[g][i] += cpuTime(pids) - before[g]
			}
			lats[i] = append(lats[i], l...)
		}
	}
	out := make([]loadResult, len(urls))
	for i, l := range lats {
		out[i] = summarize(l, dur)
	}
	return out, cpu, nil
}

type loadResult struct {
	rps float64
	p99 time.Duration
}

// load runs n clients against url (Host web.example.com) for dur,
// dialling from the network namespace ns, on keep-alive connections or
// (fresh) a new connection per request; any failed request fails the run.
func load(ns, url string, n int, dur time.Duration, fresh bool) (loadResult, error) {
	lats, err := run(ns, url, n, dur, fresh)
	if err != nil {
		return loadResult{}, err
	}
	return summarize(lats, dur), nil
}

// summarize gives the rate and p99 of lats, requests done in dur.
func summarize(lats []time.Duration, dur time.Duration) loadResult {
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	return loadResult{rps: float64(len(lats)) / dur.Seconds(), p99: lats[len(lats)*99/100]}
}

// run is load's part that returns every request's latency.
func run(ns, url string, n int, dur time.Duration, fresh bool) ([]time.Duration, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableKeepAlives: fresh, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := nettools.Do(ns, func() (err error) {
			conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp4", addr)
			return err
		})
		return conn, err
	}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var (
		mu   sync.Mutex
		lats []time.Duration
		ferr error
		wg   sync.WaitGroup
	)
	end := time.Now().Add(dur)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				req, _ := http.NewRequest("GET", url, nil)
				req.Host = "web.example.com"
				t0 := time.Now()
				resp, err := cl.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				if err != nil {
					mu.Lock()
					ferr = err
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ferr != nil {
		return nil, ferr
	}
	if len(lats) == 0 {
		return nil, fmt.Errorf("no request completed")
	}
	return lats, nil
}
