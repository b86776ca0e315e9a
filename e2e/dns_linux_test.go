package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/e2e/testutil"
	"github.com/skiff-io/skiff/nettools"
)

// TestClusterDNS runs a master and a real agent, each in a network
// namespace of a test network. The agent's DNS server holds 10.43.0.10 on
// lo of its namespace; the test queries it from inside that namespace and
// from a pod (busybox nslookup), for a Service created through the API and
// a headless Service with a StatefulSet-style pod, and forwards other names
// to a fake upstream listening on 127.0.0.1 inside the node's namespace.
func TestClusterDNS(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not installed")
	}
	n := startRealNode(t)
	nodeNS := "/run/netns/" + n.agent.Netns
	ctx := context.Background()

	// The fake upstream, inside the node namespace, and the agent
	// restarted to forward to it.
	upstream := startNetnsUpstream(t, nodeNS)
	n.agent.Stop()
	n.agent.Args = append(n.agent.Args, "--cluster-dns-upstream", upstream)
	n.agent.Start()

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.43.0.50", Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	if _, err := n.cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	headless := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "hl", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "hl"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	if _, err := n.cs.CoreV1().Services("default").Create(ctx, headless, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	query := func(server, name string, qtype uint16) (*dns.Msg, error) {
		var r *dns.Msg
		err := nettools.Do(nodeNS, func() error {
			m := new(dns.Msg)
			m.SetQuestion(name, qtype)
			var err error
			r, _, err = (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, server)
			return err
		})
		return r, err
	}
	answerA := func(server, name, want string) func() error {
		return func() error {
			r, err := query(server, name, dns.TypeA)
			if err != nil {
				return err
			}
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok && a.A.String() == want {
					return nil
				}
			}
			return fmt.Errorf("%s at %s: %s %v", name, server, dns.RcodeToString[r.Rcode], r.Answer)
		}
	}
	wait := func(what string, cond func() error) {
		t.Helper()
		if err := testutil.Poll(60*time.Second, cond); err != nil {
			t.Fatalf("%s: %v\n--- agent log ---\n%s", what, err, n.agent.LogTail(30))
		}
	}

	t.Run("FromTheNodeNamespace", func(t *testing.T) {
		wait("service name at the cluster DNS IP", answerA("10.43.0.10:53", "web.default.svc.cluster.local.", "10.43.0.50"))
		wait("service name at the node address", answerA(net.JoinHostPort(n.agent.IP, "53"), "web.default.svc.cluster.local.", "10.43.0.50"))
		wait("forwarded name", answerA("10.43.0.10:53", "example.test.", "192.0.2.7"))
		r, err := query("10.43.0.10:53", "nope.default.svc.cluster.local.", dns.TypeA)
		if err != nil || r.Rcode != dns.RcodeNameError {
			t.Fatalf("nope: %v %v", r, err)
		}
		r, err = query("10.43.0.10:53", "_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV)
		if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.SRV).Port != 80 {
			t.Fatalf("SRV: %v %v", r, err)
		}
		// The Service's deletion reaches the DNS server.
		if err := n.cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		wait("deleted service gone", func() error {
			r, err := query("10.43.0.10:53", "web.default.svc.cluster.local.", dns.TypeA)
			if err != nil {
				return err
			}
			if r.Rcode != dns.RcodeNameError {
				return fmt.Errorf("still answered: %v", r.Answer)
			}
			return nil
		})
		if _, err := n.cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("FromAPod", func(t *testing.T) {
		p := bbPod("dnsclient", corev1.RestartPolicyNever, "sleep 600")
		p.Labels = map[string]string{"app": "hl"}
		p.Spec.Hostname, p.Spec.Subdomain = "c0", "hl"
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, PeriodSeconds: 1}
		n.create(p)
		p = n.waitPod("dnsclient", "ready", func(p *corev1.Pod) error {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.Status.PodIP != "" {
					return nil
				}
			}
			return fmt.Errorf("not ready: %v", p.Status.Conditions)
		})
		podIP := p.Status.PodIP
		out, err := n.kubectl("exec", "dnsclient", "--", "cat", "/etc/resolv.conf")
		if err != nil || !strings.Contains(out, "nameserver 10.43.0.10") ||
			!strings.Contains(out, "search default.svc.cluster.local svc.cluster.local cluster.local") || !strings.Contains(out, "options ndots:5") {
			t.Fatalf("pod resolv.conf: %v\n%s", err, out)
		}
		lookup := func(name, want string) {
			t.Helper()
			var last string
			err := testutil.Poll(60*time.Second, func() error {
				// busybox's nslookup tries every search domain and exits
				// 1 if any of them failed: judge by the answer printed.
				out, err := n.kubectl("exec", "dnsclient", "--", "nslookup", name)
				last = out
				if !strings.Contains(out, "Address: "+want+"\n") {
					return fmt.Errorf("no %s in %q (%v)", want, out, err)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("nslookup %s in a pod: %v\n%s\n--- agent log ---\n%s", name, err, last, n.agent.LogTail(20))
			}
		}
		lookup("web.default.svc.cluster.local", "10.43.0.50")
		lookup("web", "10.43.0.50") // through the search path
		lookup("hl.default.svc.cluster.local", podIP)
		lookup("c0.hl.default.svc.cluster.local", podIP)
		lookup(strings.ReplaceAll(podIP, ".", "-")+".default.pod.cluster.local", podIP)
		lookup("example.test", "192.0.2.7")
	})

	t.Run("HostNetworkPods", func(t *testing.T) {
		// Host-network pods violate the default baseline Pod Security
		// level: label the namespace as an operator would.
		if out, err := n.kubectl("label", "--overwrite", "namespace", "default", "pod-security.kubernetes.io/enforce=privileged"); err != nil {
			t.Fatalf("label namespace: %v\n%s", err, out)
		}
		for _, tc := range []struct {
			name    string
			policy  corev1.DNSPolicy
			cluster bool
		}{{"hostnet-cf", corev1.DNSClusterFirst, false}, {"hostnet-cfhn", corev1.DNSClusterFirstWithHostNet, true}} {
			p := bbPod(tc.name, corev1.RestartPolicyNever, "sleep 600")
			p.Spec.HostNetwork, p.Spec.DNSPolicy = true, tc.policy
			n.create(p)
			n.waitPod(tc.name, "running", phase(corev1.PodRunning))
			out, err := n.kubectl("exec", tc.name, "--", "cat", "/etc/resolv.conf")
			if err != nil || strings.Contains(out, "10.43.0.10") == !tc.cluster {
				t.Fatalf("%s resolv.conf (cluster DNS expected: %v): %v\n%s", tc.policy, tc.cluster, err, out)
			}
			if tc.cluster {
				// The pod shares the node's namespace, where the address is held.
				out, _ := n.kubectl("exec", tc.name, "--", "nslookup", "web.default.svc.cluster.local")
				if !strings.Contains(out, "Address: 10.43.0.50\n") {
					t.Fatalf("nslookup from a host-network pod: %s", out)
				}
			}
		}
	})

	// The DNS server's and the service proxy's metrics, with CoreDNS's
	// and kube-proxy's names, are in the master's store (the kubelet
	// job scrapes them from the node's kubelet /metrics).
	t.Run("Metrics", func(t *testing.T) {
		for _, q := range []string{
			`coredns_dns_requests_total{job="kubelet",node="real-1",zone="cluster.local.",type="A"} > 0`,
			`coredns_dns_responses_total{job="kubelet",node="real-1",rcode="NXDOMAIN"} > 0`,
			`coredns_dns_request_duration_seconds_count{job="kubelet",node="real-1"} > 0`,
			`kubeproxy_sync_proxy_rules_last_timestamp_seconds{job="kubelet",node="real-1"} > 0`,
			`kubeproxy_sync_proxy_rules_duration_seconds_count{job="kubelet",node="real-1"} > 0`,
		} {
			wait(q, func() error {
				out, err := n.master.Run(context.Background(), "metrics", "query", q)
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				if !strings.Contains(out, `node="real-1"`) {
					return fmt.Errorf("no series:\n%s", out)
				}
				return nil
			})
		}
	})
}

// startNetnsUpstream serves example.test. A 192.0.2.7 on 127.0.0.1 inside
// the namespace at nsPath (NXDOMAIN for other names) and returns its
// address.
func startNetnsUpstream(t *testing.T, nsPath string) string {
	t.Helper()
	var (
		pc net.PacketConn
		ln net.Listener
	)
	err := nettools.Do(nsPath, func() error {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if q := r.Question[0]; strings.EqualFold(q.Name, "example.test.") && q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Name + " 30 IN A 192.0.2.7")
			m.Answer = append(m.Answer, rr)
		} else if !strings.EqualFold(q.Name, "example.test.") {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
	return pc.LocalAddr().String()
}
