package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestResolvConfPerPolicy(t *testing.T) {
	hostFile := filepath.Join(t.TempDir(), "resolv.conf")
	host := "# node\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch old.example\nsearch corp.example lab.example. .\noptions ndots:2 timeout:1\noptions ndots:3\n"
	if err := os.WriteFile(hostFile, []byte(host), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{ClusterDNS: []string{"10.43.0.10"}, ClusterDomain: "cluster.local", ResolvConf: hostFile}}
	noCluster := &Agent{cfg: Config{ClusterDomain: "cluster.local", ResolvConf: hostFile}}
	five, two := "5", "2"
	pod := func(policy corev1.DNSPolicy, hostNet bool, dc *corev1.PodDNSConfig) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "p"},
			Spec: corev1.PodSpec{DNSPolicy: policy, HostNetwork: hostNet, DNSConfig: dc}}
	}
	const (
		clusterFirst = "search team-a.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.43.0.10\noptions ndots:5\n"
		nodeConf     = "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions ndots:3 timeout:1\n"
	)
	for _, tc := range []struct {
		name string
		a    *Agent
		pod  *corev1.Pod
		want string
	}{
		{"default policy is ClusterFirst", a, pod("", false, nil), clusterFirst},
		{"ClusterFirst", a, pod(corev1.DNSClusterFirst, false, nil), clusterFirst},
		{"ClusterFirst on the host network falls back to Default", a, pod(corev1.DNSClusterFirst, true, nil), nodeConf},
		{"ClusterFirstWithHostNet", a, pod(corev1.DNSClusterFirstWithHostNet, true, nil), clusterFirst},
		{"ClusterFirstWithHostNet off the host network", a, pod(corev1.DNSClusterFirstWithHostNet, false, nil), clusterFirst},
		{"ClusterFirst without a cluster DNS address", noCluster, pod(corev1.DNSClusterFirst, false, nil), nodeConf},
		{"Default", a, pod(corev1.DNSDefault, false, nil), nodeConf},
		{"None with dnsConfig", a, pod(corev1.DNSNone, false, &corev1.PodDNSConfig{
			Nameservers: []string{"192.0.2.1"}, Searches: []string{"my.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &two}, {Name: "edns0"}}}),
			"search my.example\nnameserver 192.0.2.1\noptions ndots:2 edns0\n"},
		{"None without dnsConfig", a, pod(corev1.DNSNone, false, nil), ""},
		{"ClusterFirst merged with dnsConfig", a, pod(corev1.DNSClusterFirst, false, &corev1.PodDNSConfig{
			Nameservers: []string{"10.43.0.10", "192.0.2.1"}, Searches: []string{"cluster.local", "extra.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &two}, {Name: "single-request-reopen"}}}),
			"search team-a.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example extra.example\n" +
				"nameserver 10.43.0.10\nnameserver 192.0.2.1\noptions ndots:2 single-request-reopen\n"},
		{"Default merged with dnsConfig, at most 3 nameservers", a, pod(corev1.DNSDefault, false, &corev1.PodDNSConfig{
			Nameservers: []string{"192.0.2.1", "192.0.2.2"}, Options: []corev1.PodDNSConfigOption{{Name: "timeout", Value: &five}}}),
			"search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nnameserver 192.0.2.1\noptions ndots:3 timeout:5\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.resolvConf(tc.pod); got != tc.want {
				t.Fatalf("resolv.conf:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestResolvConfLimits(t *testing.T) {
	a := &Agent{cfg: Config{ClusterDNS: []string{"10.43.0.10"}, ClusterDomain: "cluster.local", ResolvConf: filepath.Join(t.TempDir(), "none")}}
	var many []string
	for i := 0; i < 40; i++ {
		many = append(many, strings.Repeat("x", 60)+".example")
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}, Spec: corev1.PodSpec{DNSConfig: &corev1.PodDNSConfig{Searches: many}}}
	cfg := a.dnsConfig(p)
	if len(cfg.Searches) > maxDNSSearchPaths || len(strings.Join(cfg.Searches, " ")) > maxDNSSearchListLen {
		t.Fatalf("%d search domains, %d bytes", len(cfg.Searches), len(strings.Join(cfg.Searches, " ")))
	}
	if cfg.Searches[0] != "ns.svc.cluster.local" {
		t.Fatalf("cluster search domains not first: %v", cfg.Searches[:3])
	}
}
