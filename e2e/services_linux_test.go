package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestServiceClusterIP: a client pod reaches a Service by its cluster IP
// through the agent's nftables proxy, and the requests spread over every
// ready endpoint. Client and endpoints share the node's bridge, so this
// also checks the masquerade that stands in for br_netfilter.
func TestServiceClusterIP(t *testing.T) {
	n := startRealNode(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		p := bbPod(fmt.Sprintf("web-%d", i), corev1.RestartPolicyAlways,
			fmt.Sprintf("mkdir -p /tmp/w && echo web-%d > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w", i))
		p.Labels = map[string]string{"app": "web"}
		n.create(p)
	}
	n.create(bbPod("client", corev1.RestartPolicyAlways, "exec sleep 3600"))
	svc, err := n.cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(svc.Spec.ClusterIP, "10.43.") {
		t.Fatalf("cluster IP %q not from 10.43.0.0/16", svc.Spec.ClusterIP)
	}
	for _, name := range []string{"web-0", "web-1", "web-2", "client"} {
		n.waitPod(name, "running", phase(corev1.PodRunning))
	}
	seen := map[string]int{}
	var last string
	err = testutil.Poll(90*time.Second, func() error {
		out, err := n.kubectl("exec", "client", "--", "wget", "-qO-", "http://"+svc.Spec.ClusterIP+"/")
		if err != nil {
			last = out
			return fmt.Errorf("wget: %v: %s", err, out)
		}
		seen[strings.TrimSpace(out)]++
		if len(seen) < 3 {
			return fmt.Errorf("answers so far: %v", seen)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ClusterIP %s: %v (last %q)\n--- agent log ---\n%s", svc.Spec.ClusterIP, err, last, n.agent.LogTail(30))
	}
	t.Logf("answers through %s: %v", svc.Spec.ClusterIP, seen)

	// Pods find the API through the kubernetes Service: its variables,
	// and a TLS handshake through its cluster IP (DNAT to the master).
	out, err := n.kubectl("exec", "client", "--", "env")
	if err != nil || !strings.Contains(out, "KUBERNETES_SERVICE_HOST=10.43.0.1") || !strings.Contains(out, "KUBERNETES_SERVICE_PORT=443") {
		t.Fatalf("client env: %v\n%s", err, out)
	}
	out, err = n.kubectl("exec", "client", "--", "wget", "-qO-", "--no-check-certificate", "https://10.43.0.1/version")
	// busybox's TLS and the API server may not agree on a cipher suite,
	// and anonymous requests may be refused: an answer from the server's
	// TLS stack (an alert) or HTTP proves the way.
	if err != nil && !strings.Contains(out, "HTTP/1.1 40") && !strings.Contains(out, "TLS error from peer") {
		t.Fatalf("kubernetes Service from a pod: %v\n%s", err, out)
	}
	t.Logf("https://10.43.0.1/version from a pod: %q", strings.TrimSpace(out))

	// `skiff services` shows the same from the API, nft-free.
	out, err = n.master.Run(ctx, "services", "--node", "real-1")
	if err != nil || !strings.Contains(out, "default/web:80/tcp") || strings.Count(out, ":8080(local)") != 3 {
		t.Fatalf("skiff services: %v\n%s", err, out)
	}
	out, err = n.master.Run(ctx, "services", "--node", "real-1", "--rules")
	if err != nil || !strings.Contains(out, "ip daddr "+svc.Spec.ClusterIP+" meta l4proto tcp th dport 80 goto") {
		t.Fatalf("skiff services --rules: %v\n%s", err, out)
	}

	// The kubernetes Service: first address of the range, the master's
	// API address as its endpoint.
	k, err := n.cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || k.Spec.ClusterIP != "10.43.0.1" || k.Spec.Ports[0].Port != 443 {
		t.Fatalf("kubernetes Service: %+v %v", k, err)
	}
	err = testutil.Poll(30*time.Second, func() error {
		ep, err := n.cs.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || ep.Subsets[0].Addresses[0].IP != n.master.IP {
			return fmt.Errorf("endpoints %+v, want %s", ep.Subsets, n.master.IP)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
