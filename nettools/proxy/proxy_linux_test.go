package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/nettools"
	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// world is a small network made of namespaces only (nothing in the host's
// namespace): a client C and local endpoints E on the node N's bridge
// (10.42.0.0/24), remote endpoints R routed through N (10.42.1.0/24), and
// an outside host X on the node's address 192.168.77.1 for node ports.
type world struct {
	t      testing.TB
	prefix string
}

func (w *world) ns(n string) string   { return w.prefix + n }
func (w *world) path(n string) string { return "/var/run/netns/" + w.ns(n) }

func (w *world) ip(args ...string) {
	w.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		w.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newWorld(t testing.TB) *world {
	if os.Geteuid() != 0 {
		t.Skip("the proxy's root tests need root (network namespaces, nftables)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the ip tool (iproute2) is not installed")
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	w := &world{t: t, prefix: "skproxy" + hex.EncodeToString(b[:]) + "-"}
	for _, n := range []string{"N", "C", "E", "R", "X"} {
		w.ip("netns", "add", w.ns(n))
		n := n
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", w.ns(n)).Run() })
		w.ip("-n", w.ns(n), "link", "set", "lo", "up")
	}
	N := []string{"-n", w.ns("N")}
	w.ip(append(N, "link", "add", "br0", "type", "bridge")...)
	w.ip(append(N, "addr", "add", "10.42.0.1/24", "dev", "br0")...)
	w.ip(append(N, "link", "set", "br0", "up")...)
	attach := func(name, peer string, addrs []string, gw string, bridged bool, nodeAddr string) {
		w.ip(append(N, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", w.ns(peer))...)
		if bridged {
			w.ip(append(N, "link", "set", name, "master", "br0")...)
		} else {
			w.ip(append(N, "addr", "add", nodeAddr, "dev", name)...)
		}
		w.ip(append(N, "link", "set", name, "up")...)
		for _, a := range addrs {
			w.ip("-n", w.ns(peer), "addr", "add", a, "dev", "eth0")
		}
		w.ip("-n", w.ns(peer), "link", "set", "eth0", "up")
		w.ip("-n", w.ns(peer), "route", "add", "default", "via", gw)
	}
	attach("vc", "C", []string{"10.42.0.2/24"}, "10.42.0.1", true, "")
	attach("ve", "E", []string{"10.42.0.3/24", "10.42.0.4/24"}, "10.42.0.1", true, "")
	attach("vr", "R", []string{"10.42.1.2/24"}, "10.42.1.1", false, "10.42.1.1/24")
	attach("vx", "X", []string{"192.168.77.2/24"}, "192.168.77.1", false, "192.168.77.1/24")
	// Forwarding in N stays off: the nftables mode turns it on.
	return w
}

// serve runs a TCP and a UDP server on addr in namespace n that answer
// with addr.
func (w *world) serve(n, addr string) {
	w.t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := nettools.Do(w.path(n), func() error {
		var err error
		if ln, err = net.Listen("tcp4", addr); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, addr)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(addr), from)
		}
	}()
}

// get asks addr from namespace n over TCP (or UDP) and returns the answer.
func (w *world) get(n, network, addr string) (string, error) {
	var answer string
	err := nettools.Do(w.path(n), func() error {
		c, err := net.DialTimeout(network, addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if network == "udp4" {
			if _, err := c.Write([]byte("?")); err != nil {
				return err
			}
			b := make([]byte, 1500)
			k, err := c.Read(b)
			answer = string(b[:k])
			return err
		}
		b, err := io.ReadAll(c)
		answer = string(b)
		return err
	})
	return answer, err
}

// udpFrom asks addr over UDP from namespace n with a fixed local address
// (so every ask is the same conntrack flow).
func (w *world) udpFrom(n, laddr, addr string) (string, error) {
	var answer string
	err := nettools.Do(w.path(n), func() error {
		la, err := net.ResolveUDPAddr("udp4", laddr)
		if err != nil {
			return err
		}
		ra, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err := net.DialUDP("udp4", la, ra)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("?")); err != nil {
			return err
		}
		b := make([]byte, 1500)
		k, err := c.Read(b)
		answer = string(b[:k])
		return err
	})
	return answer, err
}

// spread asks n times and counts the answers; errors fail the test.
func (w *world) spread(n, network, addr string, times int) map[string]int {
	w.t.Helper()
	seen := map[string]int{}
	for i := 0; i < times; i++ {
		a, err := w.get(n, network, addr)
		if err != nil {
			w.t.Fatalf("%s %s from %s: %v", network, addr, n, err)
		}
		seen[a]++
	}
	return seen
}

func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not after 15s: %s", what, last)
}

func sliceFor(svc string, proto corev1.Protocol, port int32, eps map[string]string, notReady ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: svc, Namespace: "default",
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr(""), Port: ptr(port), Protocol: ptr(proto)}}}
	for ip, node := range eps {
		ready := true
		for _, n := range notReady {
			if n == ip {
				ready = false
			}
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready)}})
	}
	return s
}

func startProxy(t testing.TB, w *world, cs kubernetes.Interface, mode Mode, balance ...Balance) (*Proxy, context.CancelFunc) {
	t.Helper()
	level := slog.LevelInfo
	if os.Getenv("SKIFF_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	var bal Balance
	if len(balance) > 0 {
		bal = balance[0]
	}
	p, err := New(Config{Client: cs, NodeName: "node1", Mode: mode, NetNS: w.path("N"), Balance: bal,
		MinSyncInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return p, stop
}

func TestProxyNFTables(t *testing.T)           { testProxy(t, ModeNFTables, BalanceRandom) }
func TestProxyNFTablesRoundRobin(t *testing.T) { testProxy(t, ModeNFTables, BalanceRoundRobin) }
func TestProxyUserspace(t *testing.T)          { testProxy(t, ModeUserspace, "") }

func testProxy(t *testing.T, mode Mode, balance Balance) {
	w := newWorld(t)
	api := apiservertest.NewServer(t, apiservertest.Options{Admission: true})
	cfg := api.RESTConfig()
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ep := range []struct{ n, addr string }{
		{"E", "10.42.0.3:8080"}, {"E", "10.42.0.4:8080"}, {"R", "10.42.1.2:8080"},
	} {
		w.serve(ep.n, ep.addr)
	}
	mk := func(name string, typ corev1.ServiceType, proto corev1.Protocol, affinity bool) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Type: typ,
			Ports: []corev1.ServicePort{{Port: 80, Protocol: proto}}}}
		if affinity {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}
		s, err := cs.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	all := map[string]string{"10.42.0.3": "node1", "10.42.0.4": "node1", "10.42.1.2": "node2"}
	web := mk("web", corev1.ServiceTypeNodePort, corev1.ProtocolTCP, false)
	udp := mk("udp", corev1.ServiceTypeClusterIP, corev1.ProtocolUDP, false)
	sticky := mk("sticky", corev1.ServiceTypeClusterIP, corev1.ProtocolTCP, true)
	empty := mk("empty", corev1.ServiceTypeClusterIP, corev1.ProtocolTCP, false)
	slices := cs.DiscoveryV1().EndpointSlices("default")
	for _, s := range []*discoveryv1.EndpointSlice{
		sliceFor("web", corev1.ProtocolTCP, 8080, all),
		sliceFor("udp", corev1.ProtocolUDP, 8080, all),
		sliceFor("sticky", corev1.ProtocolTCP, 8080, all),
	} {
		if _, err := slices.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Traffic policies Local: only this node's endpoints (10.42.0.3 and
	// .4); the node port keeps the client's address (not masqueraded).
	local := mk("local", corev1.ServiceTypeClusterIP, corev1.ProtocolTCP, false)
	local.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
	if local, err = cs.CoreV1().Services("default").Update(ctx, local, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	extLocal := mk("extlocal", corev1.ServiceTypeNodePort, corev1.ProtocolTCP, false)
	extLocal.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	if extLocal, err = cs.CoreV1().Services("default").Update(ctx, extLocal, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"local", "extlocal"} {
		if _, err := slices.Create(ctx, sliceFor(name, corev1.ProtocolTCP, 8080, all), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p, stop := startProxy(t, w, cs, mode, balance)
	vip := net.JoinHostPort(web.Spec.ClusterIP, "80")

	// Spread over every ready endpoint, local (same bridge as the client:
	// masqueraded) and remote.
	eventually(t, "ClusterIP reaches all 3 endpoints", func() (bool, string) {
		if _, err := w.get("C", "tcp4", vip); err != nil {
			return false, err.Error()
		}
		seen := w.spread("C", "tcp4", vip, 30)
		return len(seen) == 3, fmt.Sprint(seen)
	})
	t.Logf("%s: synced %d service ports in %v", mode, p.LastSync().ServicePorts, p.LastSync().Duration)
	if balance == BalanceRoundRobin || mode == ModeUserspace {
		// Round robin: exactly even.
		if seen := w.spread("C", "tcp4", vip, 30); len(seen) != 3 || seen["10.42.0.3:8080"] != 10 || seen["10.42.1.2:8080"] != 10 {
			t.Fatalf("round robin over 3 endpoints, 30 requests: %v", seen)
		}
	}
	if seen := w.spread("C", "tcp4", net.JoinHostPort(local.Spec.ClusterIP, "80"), 20); len(seen) != 2 || seen["10.42.1.2:8080"] != 0 {
		t.Fatalf("internalTrafficPolicy Local: answers from %v", seen)
	}
	if seen := w.spread("X", "tcp4", fmt.Sprintf("192.168.77.1:%d", extLocal.Spec.Ports[0].NodePort), 20); len(seen) != 2 || seen["10.42.1.2:8080"] != 0 {
		t.Fatalf("externalTrafficPolicy Local: answers from %v", seen)
	}

	// No ready endpoints: refused at once, not a timeout.
	start := time.Now()
	_, err = w.get("C", "tcp4", net.JoinHostPort(empty.Spec.ClusterIP, "80"))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("service without endpoints: want connection refused, got %v after %v", err, time.Since(start))
	}

	// UDP.
	eventually(t, "UDP ClusterIP reaches all 3 endpoints", func() (bool, string) {
		seen := map[string]int{}
		for i := 0; i < 30; i++ {
			a, err := w.get("C", "udp4", net.JoinHostPort(udp.Spec.ClusterIP, "80"))
			if err != nil {
				return false, err.Error()
			}
			seen[a]++
		}
		return len(seen) == 3, fmt.Sprint(seen)
	})

	// A UDP flow whose endpoint goes away moves to another one (its
	// conntrack entry is deleted; the removed server still answers, so a
	// stale entry would show).
	flowAddr := net.JoinHostPort(udp.Spec.ClusterIP, "80")
	first, err := w.udpFrom("C", "10.42.0.2:40000", flowAddr)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := w.udpFrom("C", "10.42.0.2:40000", flowAddr); err != nil || again != first {
		t.Fatalf("one flow, two endpoints: %q then %q (%v)", first, again, err)
	}
	rest := map[string]string{}
	for ip, node := range all {
		if ip+":8080" != first {
			rest[ip] = node
		}
	}
	us, err := slices.Get(ctx, "udp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	moved := sliceFor("udp", corev1.ProtocolUDP, 8080, rest)
	moved.ResourceVersion = us.ResourceVersion
	if _, err := slices.Update(ctx, moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the UDP flow leaves the removed endpoint", func() (bool, string) {
		a, err := w.udpFrom("C", "10.42.0.2:40000", flowAddr)
		if err != nil {
			return false, err.Error()
		}
		return a != first, a
	})

	// Session affinity: one client, one endpoint.
	if seen := w.spread("C", "tcp4", net.JoinHostPort(sticky.Spec.ClusterIP, "80"), 15); len(seen) != 1 {
		t.Fatalf("sessionAffinity ClientIP: answers from %v", seen)
	}

	// NodePort from outside the node, on the node's address.
	np := fmt.Sprintf("192.168.77.1:%d", web.Spec.Ports[0].NodePort)
	eventually(t, "NodePort reaches all 3 endpoints", func() (bool, string) {
		seen := map[string]int{}
		for i := 0; i < 30; i++ {
			a, err := w.get("X", "tcp4", np)
			if err != nil {
				return false, err.Error()
			}
			seen[a]++
		}
		return len(seen) == 3, fmt.Sprint(seen)
	})

	// A not-ready endpoint gets no traffic.
	s, err := slices.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nr := sliceFor("web", corev1.ProtocolTCP, 8080, all, "10.42.1.2")
	nr.ResourceVersion = s.ResourceVersion
	if _, err := slices.Update(ctx, nr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "not-ready endpoint left out", func() (bool, string) {
		seen := w.spread("C", "tcp4", vip, 20)
		return len(seen) == 2 && seen["10.42.1.2:8080"] == 0, fmt.Sprint(seen)
	})

	// Restart: the proxy stops, a change happens meanwhile, a new proxy
	// resyncs. The nftables rules keep serving while no proxy runs.
	stop()
	if mode == ModeNFTables {
		if seen := w.spread("C", "tcp4", vip, 5); len(seen) == 0 {
			t.Fatalf("no answers while the proxy is down")
		}
	}
	s, err = slices.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	one := sliceFor("web", corev1.ProtocolTCP, 8080, map[string]string{"10.42.1.2": "node2"})
	one.ResourceVersion = s.ResourceVersion
	if _, err := slices.Update(ctx, one, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	startProxy(t, w, cs, mode)
	eventually(t, "after restart only the remaining endpoint answers", func() (bool, string) {
		if _, err := w.get("C", "tcp4", vip); err != nil {
			return false, err.Error()
		}
		seen := w.spread("C", "tcp4", vip, 10)
		return len(seen) == 1 && seen["10.42.1.2:8080"] == 10, fmt.Sprint(seen)
	})
}
