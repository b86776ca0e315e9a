package netpol

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/google/nftables"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/nettools"
)

// BenchmarkSync: computing and programming the rules of a node with 100
// local pods out of 5,000 in the cluster, 50 namespaces, each namespace
// with a deny-all policy and an allow policy from its "client" pods on
// two ports (a table of 100 ingress chains with ~100 rules each).
func BenchmarkSync(b *testing.B) {
	var pods []*corev1.Pod
	var nss []*corev1.Namespace
	var pols []*networkingv1.NetworkPolicy
	tcp := corev1.ProtocolTCP
	p80, p443 := intstr.FromInt32(80), intstr.FromString("https")
	for n := 0; n < 50; n++ {
		ns := fmt.Sprintf("ns-%d", n)
		nss = append(nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		pols = append(pols,
			&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny"}},
			&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "allow"}, Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "server"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: &p80, Protocol: &tcp}, {Port: &p443, Protocol: &tcp}},
				}}}})
		for i := 0; i < 100; i++ {
			role, node := "client", fmt.Sprintf("node-%d", (n*100+i)%50)
			if i%2 == 0 {
				role = "server"
			}
			ip := netip.AddrFrom4([4]byte{10, 42, byte(n), byte(i + 2)})
			pods = append(pods, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", i), Labels: map[string]string{"role": role}},
				Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c",
					Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: 8443}}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String()},
			})
		}
	}
	b.Run("compute", func(b *testing.B) {
		for range b.N {
			if rs := Compute("node-0", pols, pods, nss); len(rs) != 100 {
				b.Fatalf("%d isolated pods", len(rs))
			}
		}
	})
	b.Run("program", func(b *testing.B) {
		if !isRoot() {
			b.Skip("needs root (a test network namespace)")
		}
		ns := filepath.Join(b.TempDir(), "node")
		if err := nettools.NewNetNS(ns); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = nettools.DeleteNetNS(ns) })
		rs := Compute("node-0", pols, pods, nss)
		rules := 0
		for _, r := range rs {
			ms, _ := matches(0, r.Ingress, func([]netip.Addr) (*nftables.Set, error) { return &nftables.Set{}, nil })
			rules += len(ms) + 1
		}
		b.ResetTimer()
		for range b.N {
			if err := Program(ns, rs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(rules), "rules")
	})
}
