package bench

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
	rtestutil "github.com/skiff-io/skiff/runtime/testutil"
)

// Pod network benchmarks (issue 8): TCP throughput and round-trip latency
// between two pods, on the same node and across nodes, with the host-gw
// and vxlan backends. The sockets are the test's, opened inside the pods'
// network namespaces (testutil.NetCluster.InPod), so the figures measure
// the data path (veth, bridge, routing, VXLAN) without a container's
// tools in the way.

func BenchmarkPodNetwork(b *testing.B) {
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
	for _, backend := range []string{"host-gw", "vxlan"} {
		b.Run(backend, func(b *testing.B) {
			c := testutil.NewNetCluster(b, testutil.NetClusterOptions{Nodes: 2, ImageArchives: []string{archive},
				Args: []string{"--flannel-backend", backend}})
			pod := func(name string, node int) *corev1.Pod {
				grace := int64(1)
				return c.RunPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
					Spec: corev1.PodSpec{NodeName: c.NodeName(node), TerminationGracePeriodSeconds: &grace,
						Containers: []corev1.Container{{Name: "main", Image: benchImage, ImagePullPolicy: corev1.PullNever,
							Command: []string{"sleep", "3600"}}}}})
			}
			server := pod("server", 1)
			near := pod("near", 1)
			far := pod("far", 0)
			addr := serveInPod(b, c, server)
			for _, cl := range []struct {
				name string
				pod  *corev1.Pod
			}{{"same-node", near}, {"cross-node", far}} {
				b.Run(cl.name, func(b *testing.B) {
					for range b.N {
						mbps := throughput(b, c, cl.pod, addr, dur)
						p50, p99 := latency(b, c, cl.pod, addr, 2000)
						b.ReportMetric(mbps, "Mbit/s")
						b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
						b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
					}
				})
			}
		})
	}
}

// serveInPod listens inside the pod's namespace: a connection starting
// with 's' is a sink (read until EOF), one starting with 'e' an echo.
func serveInPod(b *testing.B, c *testutil.NetCluster, pod *corev1.Pod) string {
	var l net.Listener
	if err := c.InPod(pod, func() (err error) {
		l, err = net.Listen("tcp4", net.JoinHostPort(pod.Status.PodIP, "0"))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				mode := make([]byte, 1)
				if _, err := io.ReadFull(conn, mode); err != nil {
					return
				}
				if mode[0] == 's' {
					n, _ := io.Copy(io.Discard, conn)
					_, _ = conn.Write([]byte{byte(n)})
					return
				}
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return l.Addr().String()
}

func dialFrom(b *testing.B, c *testutil.NetCluster, pod *corev1.Pod, addr string) *net.TCPConn {
	var conn net.Conn
	if err := c.InPod(pod, func() (err error) {
		conn, err = net.DialTimeout("tcp4", addr, 5*time.Second)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	return conn.(*net.TCPConn)
}

// throughput sends for dur and returns Mbit/s.
func throughput(b *testing.B, c *testutil.NetCluster, pod *corev1.Pod, addr string, dur time.Duration) float64 {
	conn := dialFrom(b, c, pod, addr)
	defer conn.Close()
	buf := make([]byte, 128<<10)
	buf[0] = 's'
	start := time.Now()
	var sent int64
	for time.Since(start) < dur {
		n, err := conn.Write(buf)
		if err != nil {
			b.Fatal(err)
		}
		sent += int64(n)
	}
	_ = conn.CloseWrite()
	_, _ = io.ReadAll(conn) // the sink has read everything
	return float64(sent*8) / time.Since(start).Seconds() / 1e6
}

// latency measures n one-byte round trips on one connection.
func latency(b *testing.B, c *testutil.NetCluster, pod *corev1.Pod, addr string, n int) (p50, p99 time.Duration) {
	conn := dialFrom(b, c, pod, addr)
	defer conn.Close()
	_ = conn.SetNoDelay(true)
	if _, err := conn.Write([]byte{'e'}); err != nil {
		b.Fatal(err)
	}
	one := []byte{1}
	rtts := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := conn.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, one); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	return rtts[n/2], rtts[n*99/100]
}
