package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
	"github.com/skiff-io/skiff/nettools/nft"
	"github.com/skiff-io/skiff/nettools/routes"
	rtestutil "github.com/skiff-io/skiff/runtime/testutil"
)

// netImageRef is a busybox image whose httpd serves /www, with a CGI
// script answering the client's address as the server saw it.
const netImageRef = "skiff.test/netbox:1"

func netImageArchive(t *testing.T) string {
	t.Helper()
	img, err := rtestutil.BusyboxImage(rtestutil.BusyboxPath, v1.Config{Cmd: []string{"sh"}},
		rtestutil.File{Path: "www", Dir: true},
		rtestutil.File{Path: "www/index.html", Data: "hello from httpd\n"},
		rtestutil.File{Path: "www/link.html", Data: `<a href="/rewriteme">test</a>`},
		rtestutil.File{Path: "www/cgi-bin", Dir: true},
		rtestutil.File{Path: "www/cgi-bin/ip", Mode: 0o755, Data: "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n"})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "netbox.tar")
	if err := rtestutil.WriteDockerArchive(p, netImageRef, img); err != nil {
		t.Fatal(err)
	}
	return p
}

// netPod is a pod of the net image on node, running script.
func netPod(name, node string, labels map[string]string, script string) *corev1.Pod {
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "main", Image: netImageRef, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", script},
				Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}}},
	}
}

const httpdScript = "exec httpd -f -p 8080 -h /www"

// whoFrom asks the web pod at ip, from inside the client pod's network
// namespace, which address it saw the request come from.
func whoFrom(c *testutil.NetCluster, client *corev1.Pod, ip string) (string, error) {
	var body string
	err := c.InPod(client, func() error {
		conn, err := net.DialTimeout("tcp4", net.JoinHostPort(ip, "8080"), 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(conn, "GET /cgi-bin/ip HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		b, err := io.ReadAll(conn)
		if err != nil {
			return err
		}
		body, err = cgiAddr(string(b))
		return err
	})
	return body, err
}

// nodeRoutes lists the pod routes Skiff made in node i's namespace.
func nodeRoutes(t *testing.T, c *testutil.NetCluster, i int) map[string]bool {
	t.Helper()
	ns, err := netns.GetFromPath(c.NodeNetns(i))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routes.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range rs {
		out[r.Dst.String()] = true
	}
	return out
}

func TestPodNetworkAcrossNodes(t *testing.T) {
	needRealContainers(t)
	archive := netImageArchive(t)
	for _, backend := range []routes.Backend{routes.HostGW, routes.VXLAN} {
		t.Run(string(backend), func(t *testing.T) {
			testPodNetwork(t, backend, archive)
		})
	}
}

func testPodNetwork(t *testing.T, backend routes.Backend, archive string) {
	c := testutil.NewNetCluster(t, testutil.NetClusterOptions{Nodes: 3, ImageArchives: []string{archive},
		Args: []string{"--flannel-backend", string(backend)}})
	ctx := context.Background()
	web := c.RunPod(netPod("web", c.NodeName(1), map[string]string{"app": "web"}, httpdScript))
	client := c.RunPod(netPod("client", c.NodeName(0), nil, "sleep 3600"))
	far := c.RunPod(netPod("far", c.NodeName(2), nil, "sleep 3600"))

	// Node annotations carry the backend (and for vxlan the VTEP).
	n1, err := c.CS.CoreV1().Nodes().Get(ctx, c.NodeName(1), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := n1.Annotations[routes.AnnotationBackend]; got != string(backend) {
		t.Errorf("backend annotation %q", got)
	}
	if backend == routes.VXLAN && (n1.Annotations[routes.AnnotationVTEPMAC] != routes.VTEPMAC(c.NodeName(1)).String() ||
		n1.Annotations[routes.AnnotationVTEPIP] != c.NodeIP(1)) {
		t.Errorf("VTEP annotations %v", n1.Annotations)
	}

	// A pod on node 0 reaches the pod on node 1 by IP, and the server sees
	// the client pod's IP (no NAT).
	testutil.WaitFor(t, 30*time.Second, "pod on node-0 → pod on node-1", func() error {
		got, err := whoFrom(c, client, web.Status.PodIP)
		if err == nil && got != client.Status.PodIP {
			return fmt.Errorf("seen from %q, want %s", got, client.Status.PodIP)
		}
		return err
	})
	// The same from a real container (busybox nc in the client pod).
	out, err := c.Exec(client, "sh", "-c", "printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 3 "+web.Status.PodIP+" 8080")
	if got, perr := cgiAddr(out); err != nil || perr != nil || got != client.Status.PodIP {
		t.Errorf("nc from the client container: %v: %q, want the body %s", err, out, client.Status.PodIP)
	}
	// And from the far node.
	testutil.WaitFor(t, 30*time.Second, "pod on node-2 → pod on node-1", func() error {
		got, err := whoFrom(c, far, web.Status.PodIP)
		if err == nil && got != far.Status.PodIP {
			return fmt.Errorf("seen from %q, want %s", got, far.Status.PodIP)
		}
		return err
	})

	// Traffic from a pod to outside the cluster CIDR (the test bridge's
	// address in the test's own namespace) leaves with the node's address.
	l, err := net.Listen("tcp4", net.JoinHostPort(c.Net.GatewayIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	seen := make(chan string, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
		seen <- host
		conn.Close()
	}()
	if out, err := c.Exec(client, "sh", "-c", "echo hi | nc -w 2 "+c.Net.GatewayIP+" "+fmt.Sprint(l.Addr().(*net.TCPAddr).Port)); err != nil {
		t.Fatalf("pod → outside: %v: %s", err, out)
	}
	select {
	case got := <-seen:
		if got != c.NodeIP(0) {
			t.Errorf("outside saw the pod's traffic from %s, want node-0's address %s (masqueraded)", got, c.NodeIP(0))
		}
	case <-time.After(10 * time.Second):
		t.Error("outside listener got no connection")
	}

	// The agent of node 1 stops (a clean shutdown) and starts again: pods
	// keep reaching each other meanwhile and after.
	c.StopNode(1)
	if masqTable(t, c, 1) {
		t.Error("node-1's masquerade table left after a clean shutdown")
	}
	testutil.WaitFor(t, 10*time.Second, "pod to pod while node-1's agent is down", func() error {
		got, err := whoFrom(c, client, web.Status.PodIP)
		if err == nil && got != client.Status.PodIP {
			err = fmt.Errorf("seen from %q", got)
		}
		return err
	})
	c.StartNode(1)
	c.WaitNodeReady(1)
	testutil.WaitFor(t, 30*time.Second, "node-1's agent back with its routes", func() error {
		if !nodeRoutes(t, c, 1)[podCIDROf(t, c, 0)] {
			return fmt.Errorf("no route to node-0's pods on node-1")
		}
		if !masqTable(t, c, 1) {
			return fmt.Errorf("no masquerade table on node-1")
		}
		got, err := whoFrom(c, client, web.Status.PodIP)
		if err == nil && got != client.Status.PodIP {
			err = fmt.Errorf("seen from %q", got)
		}
		return err
	})

	// Node 2 leaves (its agent stopped, its Node deleted): the routes to
	// its pods go from the other nodes.
	cidr2 := podCIDROf(t, c, 2)
	for i := 0; i < 2; i++ {
		if !nodeRoutes(t, c, i)[cidr2] {
			t.Fatalf("node-%d has no route to node-2's %s: %v", i, cidr2, nodeRoutes(t, c, i))
		}
	}
	zero := int64(0)
	_ = c.CS.CoreV1().Pods("default").Delete(ctx, far.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	testutil.WaitFor(t, 60*time.Second, "pod far gone", func() error {
		if _, err := c.CS.CoreV1().Pods("default").Get(ctx, far.Name, metav1.GetOptions{}); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
	c.StopNode(2)
	if err := c.CS.CoreV1().Nodes().Delete(ctx, c.NodeName(2), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "routes to node-2 removed", func() error {
		for i := 0; i < 2; i++ {
			if nodeRoutes(t, c, i)[cidr2] {
				return fmt.Errorf("node-%d still routes %s", i, cidr2)
			}
		}
		return nil
	})
	// The rest still works.
	if got, err := whoFrom(c, client, web.Status.PodIP); err != nil || got != client.Status.PodIP {
		t.Errorf("after node-2 left: %q, %v", got, err)
	}
}

// cgiAddr is the address in the cgi-bin/ip answer (busybox httpd
// listens on IPv6 and reports "[::ffff:10.42.0.2]").
func cgiAddr(resp string) (string, error) {
	resp = strings.ReplaceAll(resp, "\r\n", "\n")
	_, body, ok := strings.Cut(resp, "\n\n")
	if !ok {
		_, body, ok = strings.Cut(strings.TrimPrefix(resp, "HTTP/1.1 200 OK\n"), "\n\n")
	}
	if !ok {
		return "", fmt.Errorf("no HTTP body in %q", resp)
	}
	a := strings.TrimSpace(body)
	a = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
	return strings.TrimPrefix(a, "::ffff:"), nil
}

// masqTable reports whether node i has the masquerade table.
func masqTable(t *testing.T, c *testutil.NetCluster, i int) bool {
	t.Helper()
	conn, done, err := nft.Dial(c.NodeNetns(i))
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	ok, err := nft.TableExists(conn, nftables.TableFamilyIPv4, routes.MasqTable)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func podCIDROf(t *testing.T, c *testutil.NetCluster, i int) string {
	t.Helper()
	n, err := c.CS.CoreV1().Nodes().Get(context.Background(), c.NodeName(i), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Spec.PodCIDR
}
