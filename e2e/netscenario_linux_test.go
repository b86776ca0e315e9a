package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestServicesAcrossNodes is issue 8's scenario on three real nodes (the
// vxlan backend), in both proxy modes: a client pod on one node reaches a
// Service whose endpoints are on all three nodes by its cluster IP and by
// its DNS name, and the requests reach every ready endpoint; a NodePort
// answers from another node host; an endpoint whose readiness fails gets
// no more traffic; the client's agent stopped and started again keeps the
// Service reachable meanwhile and after.
func TestServicesAcrossNodes(t *testing.T) {
	needRealContainers(t)
	archive := netImageArchive(t)
	for _, mode := range []string{"nftables", "userspace"} {
		t.Run(mode, func(t *testing.T) { testServicesAcrossNodes(t, mode, archive) })
	}
}

// webPod serves "<name>\n" on port 8080 (named http) and is ready while
// /tmp/ready exists.
func webPod(name, node string) *corev1.Pod {
	p := netPod(name, node, map[string]string{"app": "web"},
		"mkdir -p /tmp/w && echo "+name+" > /tmp/w/index.html && touch /tmp/ready && exec httpd -f -p 8080 -h /tmp/w")
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}},
		PeriodSeconds: 1, FailureThreshold: 1,
	}
	return p
}

// httpGet asks http://addr/ with a fresh connection and returns the body.
func httpGet(addr string) (string, error) {
	conn, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return "", err
	}
	resp := strings.ReplaceAll(string(b), "\r\n", "\n")
	_, body, ok := strings.Cut(resp, "\n\n")
	if !ok {
		return "", fmt.Errorf("no HTTP body in %q", resp)
	}
	return strings.TrimSpace(body), nil
}

// spread calls get until every one of want answered (or the deadline),
// and fails on an answer outside want.
func spread(t *testing.T, what string, want []string, get func() (string, error), diag ...func() string) {
	t.Helper()
	seen := map[string]int{}
	var lastErr error
	err := testutil.Poll(60*time.Second, func() error {
		got, err := get()
		if err != nil {
			lastErr = err
			return err
		}
		seen[got]++
		for _, w := range want {
			if seen[w] == 0 {
				return fmt.Errorf("answers so far %v", seen)
			}
		}
		return nil
	})
	if err != nil {
		var more []string
		for _, d := range diag {
			more = append(more, d())
		}
		t.Fatalf("%s: %v (last error %v; answers %v)\n%s", what, err, lastErr, seen, strings.Join(more, "\n"))
	}
	for got := range seen {
		if !contains(want, got) {
			t.Fatalf("%s: answer %q from outside %v (all: %v)", what, got, want, seen)
		}
	}
	t.Logf("%s: %v", what, seen)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func testServicesAcrossNodes(t *testing.T, mode, archive string) {
	c := testutil.NewNetCluster(t, testutil.NetClusterOptions{Nodes: 3, ImageArchives: []string{archive},
		Args: []string{"--proxy-mode", mode}})
	ctx := context.Background()
	var webs []*corev1.Pod
	for i := 0; i < 3; i++ {
		webs = append(webs, c.RunPod(webPod(fmt.Sprintf("web-%d", i), c.NodeName(i))))
	}
	client := c.RunPod(netPod("client", c.NodeName(1), nil, "exec sleep 3600"))
	svc, err := c.CS.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"web-0", "web-1", "web-2"}
	vip := net.JoinHostPort(svc.Spec.ClusterIP, "80")
	diag := func() string {
		b, _ := os.ReadFile(filepath.Join(c.Agents[0].DataDir, "agent", "proxy", "state.txt"))
		return "--- node-1 proxy state ---\n" + string(b) + "\n--- node-1 log ---\n" + c.NodeLog(1, 40)
	}

	// Pod to pod across nodes first (the path the Service's traffic takes).
	for _, w := range webs {
		testutil.WaitFor(t, 30*time.Second, "client → "+w.Name+" by pod IP", func() error {
			return c.InPod(client, func() error { _, err := httpGet(net.JoinHostPort(w.Status.PodIP, "8080")); return err })
		})
	}

	// By cluster IP, from the client pod's network namespace: every
	// endpoint on every node answers.
	spread(t, "cluster IP "+vip+" from node-1", all, func() (string, error) {
		var body string
		err := c.InPod(client, func() (err error) { body, err = httpGet(vip); return })
		return body, err
	}, diag)

	// By DNS name from the client container: the full name and the short
	// one (through the search path of the pod's resolv.conf) resolve to
	// the cluster IP at the node's cluster DNS. (busybox's nslookup has its
	// own resolver; its wget resolves through static glibc, which cannot.)
	out, err := c.Exec(client, "nslookup", "web.default.svc.cluster.local")
	if err != nil || !strings.Contains(out, svc.Spec.ClusterIP) {
		t.Fatalf("nslookup web.default.svc.cluster.local: %v\n%s", err, out)
	}
	// busybox's nslookup tries every search domain and exits 1 when any
	// of them is NXDOMAIN; the answer through the first one is what counts.
	out, _ = c.Exec(client, "nslookup", "web")
	if !strings.Contains(out, "web.default.svc.cluster.local") || !strings.Contains(out, svc.Spec.ClusterIP) {
		t.Fatalf("nslookup web (search path):\n%s", out)
	}

	// NodePort: node-2's host asks node-0's address.
	np := net.JoinHostPort(c.NodeIP(0), fmt.Sprint(svc.Spec.Ports[0].NodePort))
	spread(t, "node port "+np+" from node-2's host", all, func() (string, error) {
		var body string
		err := c.InNode(2, func() (err error) { body, err = httpGet(np); return })
		return body, err
	})

	// web-2's readiness fails: it leaves the endpoints, and no more
	// requests reach it.
	if out, err := c.Exec(webs[2], "rm", "/tmp/ready"); err != nil {
		t.Fatalf("rm /tmp/ready: %v: %s", err, out)
	}
	testutil.WaitFor(t, 30*time.Second, "web-2 out of the endpoints", func() error {
		eps, err := c.CS.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
		if err != nil {
			return err
		}
		for _, s := range eps.Items {
			for _, e := range s.Endpoints {
				if e.TargetRef != nil && e.TargetRef.Name == "web-2" && (e.Conditions.Ready == nil || *e.Conditions.Ready) {
					return fmt.Errorf("web-2 still ready in %s", s.Name)
				}
			}
		}
		return nil
	})
	ready := []string{"web-0", "web-1"}
	// The proxies catch up with the slice: then 30 requests in a row
	// reach only the ready endpoints.
	testutil.WaitFor(t, 30*time.Second, "no traffic to web-2", func() error {
		for i := 0; i < 30; i++ {
			var body string
			if err := c.InPod(client, func() (err error) { body, err = httpGet(vip); return }); err != nil {
				return err
			}
			if !contains(ready, body) {
				return fmt.Errorf("request %d answered by %q", i, body)
			}
		}
		return nil
	})

	// The client's agent stops and starts again. In nftables mode the
	// kernel rules stay and keep serving meanwhile (userspace forwarding
	// lives in the agent and stops with it); both serve after the restart.
	c.StopNode(1)
	if mode == "nftables" {
		spread(t, "cluster IP while node-1's agent is down", ready, func() (string, error) {
			var body string
			err := c.InPod(client, func() (err error) { body, err = httpGet(vip); return })
			return body, err
		})
	}
	c.StartNode(1)
	c.WaitNodeReady(1)
	spread(t, "cluster IP after node-1's agent restarted", ready, func() (string, error) {
		var body string
		err := c.InPod(client, func() (err error) { body, err = httpGet(vip); return })
		return body, err
	})
}
