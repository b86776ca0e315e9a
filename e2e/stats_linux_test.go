package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestKubeletStats (issue 19 items 1-2, issue 17 "usage reported"): with
// real containers, the kubelet's /stats/summary, /metrics/resource,
// /metrics/cadvisor and /metrics, read through the API server's
// nodes/proxy, show a busy pod's CPU rising, a 64 MiB pod's working set
// as its cgroup counts it, and a claim's used bytes after a write; the
// kubelet refuses an unauthenticated caller and RBAC a user without
// nodes/proxy.
func TestKubeletStats(t *testing.T) {
	n := startRealNode(t, "--stats-interval", "1s")
	ctx := context.Background()

	n.create(bbPod("burn", corev1.RestartPolicyNever, "while :; do :; done"))
	// 64 MiB in a memory-backed emptyDir: tmpfs pages are charged to the
	// writer's memory cgroup and are never inactive file cache.
	mem := bbPod("mem", corev1.RestartPolicyNever, "head -c 67108864 /dev/zero > /cache/fill && touch /cache/done && sleep 3600")
	mem.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}}
	mem.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}
	n.create(mem)
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
	}}
	if _, err := n.cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	writer := bbPod("writer", corev1.RestartPolicyNever, "dd if=/dev/zero of=/data/blob bs=1048576 count=5 && sync && sleep 3600")
	writer.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
	writer.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	n.create(writer)
	for _, p := range []string{"burn", "mem", "writer"} {
		n.waitPod(p, "running", phase(corev1.PodRunning))
	}

	raw := func(path string) ([]byte, error) {
		out, err := n.kubectl("get", "--raw", "/api/v1/nodes/real-1/proxy"+path)
		if err != nil {
			return nil, fmt.Errorf("kubectl get --raw %s: %v: %s", path, err, out)
		}
		return []byte(out), nil
	}
	summary := func() (*statsapi.Summary, error) {
		b, err := raw("/stats/summary")
		if err != nil {
			return nil, err
		}
		s := &statsapi.Summary{}
		if err := json.Unmarshal(b, s); err != nil {
			return nil, fmt.Errorf("summary: %w: %.300s", err, b)
		}
		return s, nil
	}
	podOf := func(s *statsapi.Summary, name string) (*statsapi.PodStats, error) {
		for i := range s.Pods {
			if s.Pods[i].PodRef.Name == name && s.Pods[i].PodRef.Namespace == "default" {
				return &s.Pods[i], nil
			}
		}
		return nil, fmt.Errorf("no pod %s in the summary", name)
	}
	fail := func(err error) {
		t.Helper()
		t.Fatalf("%v\n--- agent log ---\n%s", err, n.agent.LogTail(30))
	}

	// The busy pod's CPU: the cumulative counter rises by at least a
	// tenth of a core over a few seconds, and the rate says so too (the
	// machine is shared: a busy loop gets what the scheduler gives it).
	var cpu0 uint64
	var t0 time.Time
	if err := testutil.Poll(60*time.Second, func() error {
		s, err := summary()
		if err != nil {
			return err
		}
		p, err := podOf(s, "burn")
		if err != nil {
			return err
		}
		if len(p.Containers) != 1 || p.Containers[0].CPU == nil || p.Containers[0].CPU.UsageCoreNanoSeconds == nil {
			return fmt.Errorf("burn: no container CPU: %+v", p.Containers)
		}
		cpu0, t0 = *p.Containers[0].CPU.UsageCoreNanoSeconds, p.Containers[0].CPU.Time.Time
		return nil
	}); err != nil {
		fail(err)
	}
	if err := testutil.Poll(60*time.Second, func() error {
		s, err := summary()
		if err != nil {
			return err
		}
		p, err := podOf(s, "burn")
		if err != nil {
			return err
		}
		c := p.Containers[0].CPU
		dt := c.Time.Sub(t0).Seconds()
		if dt < 3 {
			return fmt.Errorf("only %.1fs since the first reading", dt)
		}
		cores := float64(*c.UsageCoreNanoSeconds-cpu0) / 1e9 / dt
		if cores < 0.1 || c.UsageNanoCores == nil || *c.UsageNanoCores < 1e8 {
			return fmt.Errorf("burn uses %.3f cores over %.1fs (rate %v nanocores): want >= 0.1", cores, dt, c.UsageNanoCores)
		}
		if p.CPU == nil || *p.CPU.UsageCoreNanoSeconds < *c.UsageCoreNanoSeconds {
			return fmt.Errorf("pod CPU %v below its container's", p.CPU)
		}
		t.Logf("burn: %.2f cores; node %.2f cores", cores, float64(*s.Node.CPU.UsageNanoCores)/1e9)
		return nil
	}); err != nil {
		fail(err)
	}

	// The 64 MiB pod: its working set within 20% of what its cgroup
	// reports (usage less inactive_file), and at least 64 MiB.
	memPod, err := n.cs.CoreV1().Pods("default").Get(ctx, "mem", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.Poll(60*time.Second, func() error {
		s, err := summary()
		if err != nil {
			return err
		}
		p, err := podOf(s, "mem")
		if err != nil {
			return err
		}
		if p.Memory == nil || p.Memory.WorkingSetBytes == nil {
			return fmt.Errorf("mem: no memory stats")
		}
		got := *p.Memory.WorkingSetBytes
		want, err := cgroupWorkingSet(string(memPod.UID))
		if err != nil {
			return err
		}
		if got < 64<<20 || float64(got) < 0.8*float64(want) || float64(got) > 1.2*float64(want) {
			return fmt.Errorf("mem working set %d, cgroup says %d (want within 20%%, and >= 64 MiB)", got, want)
		}
		if len(p.Containers) != 1 || *p.Containers[0].Memory.WorkingSetBytes < 64<<20 {
			return fmt.Errorf("mem container working set %+v", p.Containers)
		}
		t.Logf("mem: working set %d, cgroup %d", got, want)
		return nil
	}); err != nil {
		fail(err)
	}

	// The claim's used bytes, in the summary (pvcRef) and in /metrics.
	if err := testutil.Poll(60*time.Second, func() error {
		s, err := summary()
		if err != nil {
			return err
		}
		p, err := podOf(s, "writer")
		if err != nil {
			return err
		}
		for _, v := range p.VolumeStats {
			if v.PVCRef != nil && v.PVCRef.Name == "data" {
				if v.UsedBytes == nil || *v.UsedBytes < 5<<20 || v.CapacityBytes == nil || *v.CapacityBytes == 0 {
					return fmt.Errorf("claim volume %+v", v)
				}
				return nil
			}
		}
		return fmt.Errorf("writer volumes %+v", p.VolumeStats)
	}); err != nil {
		fail(err)
	}
	if err := testutil.Poll(60*time.Second, func() error {
		fams, err := scrape(raw, "/metrics")
		if err != nil {
			return err
		}
		for _, name := range []string{"kubelet_running_pods", "kubelet_running_containers", "kubelet_pod_start_duration_seconds", "go_goroutines"} {
			if fams[name] == nil {
				return fmt.Errorf("/metrics: no %s", name)
			}
		}
		for _, name := range []string{"kubelet_volume_stats_used_bytes", "kubelet_volume_stats_capacity_bytes", "kubelet_volume_stats_available_bytes", "kubelet_volume_stats_inodes"} {
			m := series(fams[name], map[string]string{"namespace": "default", "persistentvolumeclaim": "data"})
			if m == nil {
				return fmt.Errorf("/metrics: no %s for default/data", name)
			}
			if name == "kubelet_volume_stats_used_bytes" && m.GetGauge().GetValue() < 5<<20 {
				return fmt.Errorf("claim used %v bytes, want >= 5 MiB", m.GetGauge().GetValue())
			}
		}
		return nil
	}); err != nil {
		fail(err)
	}

	// /metrics/resource: what metrics-server reads, in the text format.
	fams, err := scrape(raw, "/metrics/resource")
	if err != nil {
		fail(err)
	}
	for name, lb := range map[string]map[string]string{
		"node_cpu_usage_seconds_total":       {},
		"node_memory_working_set_bytes":      {},
		"container_cpu_usage_seconds_total":  {"container": "main", "pod": "burn", "namespace": "default"},
		"container_memory_working_set_bytes": {"container": "main", "pod": "mem", "namespace": "default"},
		"container_start_time_seconds":       {"container": "main", "pod": "mem", "namespace": "default"},
		"pod_cpu_usage_seconds_total":        {"pod": "burn", "namespace": "default"},
		"pod_memory_working_set_bytes":       {"pod": "mem", "namespace": "default"},
		"scrape_error":                       {},
	} {
		m := series(fams[name], lb)
		if m == nil {
			t.Fatalf("/metrics/resource: no %s%v", name, lb)
		}
		if name == "scrape_error" && m.GetGauge().GetValue() != 0 {
			t.Fatalf("scrape_error is %v", m.GetGauge().GetValue())
		}
		if name == "container_memory_working_set_bytes" && m.GetGauge().GetValue() < 64<<20 {
			t.Fatalf("mem working set %v", m.GetGauge().GetValue())
		}
		if name != "scrape_error" && m.TimestampMs == nil {
			t.Fatalf("%s has no timestamp", name)
		}
	}
	// /metrics/cadvisor: cAdvisor's names and labels.
	fams, err = scrape(raw, "/metrics/cadvisor")
	if err != nil {
		fail(err)
	}
	for name, lb := range map[string]map[string]string{
		"container_cpu_usage_seconds_total":     {"container": "main", "pod": "burn", "namespace": "default", "cpu": "total"},
		"container_memory_working_set_bytes":    {"container": "main", "pod": "mem", "namespace": "default", "image": busyboxRef},
		"container_memory_rss":                  {"container": "main", "pod": "mem"},
		"container_memory_cache":                {"container": "main", "pod": "mem"},
		"container_oom_events_total":            {"container": "main", "pod": "mem"},
		"container_network_receive_bytes_total": {"container": "", "pod": "mem", "interface": "eth0"},
		"container_fs_usage_bytes":              {"container": "main", "pod": "writer"},
		"machine_cpu_cores":                     {},
	} {
		if series(fams[name], lb) == nil {
			var have []string
			if f := fams[name]; f != nil {
				for _, m := range f.Metric {
					have = append(have, m.String())
				}
			}
			t.Fatalf("/metrics/cadvisor: no %s%v in\n%s", name, lb, strings.Join(have, "\n"))
		}
	}

	// The master's store scrapes these (every 10 s by default): kubectl
	// top pods shows the busy pod's CPU and the 64 MiB pod's memory
	// within 20% of what its cgroup reports.
	if err := testutil.Poll(90*time.Second, func() error {
		out, err := n.kubectl("top", "pods", "--no-headers")
		if err != nil {
			return fmt.Errorf("kubectl top pods: %v: %s", err, out)
		}
		top := map[string][2]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) == 3 {
				top[f[0]] = [2]string{f[1], f[2]}
			}
		}
		burn, mem := top["burn"], top["mem"]
		if burn[0] == "" || mem[1] == "" {
			return fmt.Errorf("kubectl top pods lacks burn or mem:\n%s", out)
		}
		cpu, err := resource.ParseQuantity(burn[0])
		if err != nil || cpu.MilliValue() < 100 {
			return fmt.Errorf("burn CPU %q (%v), want >= 100m:\n%s", burn[0], err, out)
		}
		got, err := resource.ParseQuantity(mem[1])
		if err != nil {
			return err
		}
		want, err := cgroupWorkingSet(string(memPod.UID))
		if err != nil {
			return err
		}
		if v := float64(got.Value()); v < 0.8*float64(want) || v > 1.2*float64(want) {
			return fmt.Errorf("mem %s in kubectl top, cgroup says %d", mem[1], want)
		}
		t.Logf("kubectl top pods:\n%s", out)
		return nil
	}); err != nil {
		fail(err)
	}

	// The kubelet itself: no client certificate, 401.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, path := range []string{"/stats/summary", "/metrics/resource", "/metrics/cadvisor", "/metrics"} {
		code, body, err := httpGetBody(hc, "https://"+n.agent.IP+":10250"+path)
		if err != nil || code != http.StatusUnauthorized {
			t.Fatalf("unauthenticated GET %s from the kubelet: %d %v %s", path, code, err, body)
		}
	}
	// Through the API: RBAC's nodes/proxy decides.
	for sa, rules := range map[string][]rbacv1.PolicyRule{
		"no-proxy": {{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list"}}},
		"stats":    {{APIGroups: []string{""}, Resources: []string{"nodes", "nodes/proxy"}, Verbs: []string{"get"}}},
	} {
		if _, err := n.cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "stats-test-" + sa}, Rules: rules}
		if _, err := n.cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "stats-test-" + sa},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: "default"}}}
		if _, err := n.cs.RbacV1().ClusterRoleBindings().Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = n.cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), rb.Name, metav1.DeleteOptions{})
			_ = n.cs.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
		})
	}
	as := func(sa string) *http.Client {
		tr, err := n.cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := rest.AnonymousClientConfig(n.master.RESTConfig())
		cfg.BearerToken = tr.Status.Token
		h, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	for _, tc := range []struct {
		sa, path string
		want     int
	}{
		{"no-proxy", "/stats/summary", http.StatusForbidden},
		{"no-proxy", "/metrics/resource", http.StatusForbidden},
		{"stats", "/stats/summary", http.StatusOK},
		{"stats", "/metrics/resource", http.StatusOK},
	} {
		c := as(tc.sa)
		url := n.master.URL() + "/api/v1/nodes/real-1/proxy" + tc.path
		if err := testutil.Poll(20*time.Second, func() error {
			code, body, err := httpGetBody(c, url)
			if err != nil {
				return err
			}
			if code != tc.want {
				return fmt.Errorf("%s GET %s: %d, want %d: %.200s", tc.sa, tc.path, code, tc.want, body)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// scrape fetches a metrics path and parses it with the Prometheus text
// parser.
func scrape(raw func(string) ([]byte, error), path string) (map[string]*dto.MetricFamily, error) {
	b, err := raw(path)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s does not parse: %w", path, err)
	}
	return fams, nil
}

// series finds the metric of f whose labels include want.
func series(f *dto.MetricFamily, want map[string]string) *dto.Metric {
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// cgroupWorkingSet reads a BestEffort pod's memory cgroup: usage less
// inactive_file (memory.current and memory.stat's inactive_file on
// cgroup v2; memory.usage_in_bytes and total_inactive_file on v1).
func cgroupWorkingSet(uid string) (uint64, error) {
	rel := filepath.Join("skiff", "kubepods", "besteffort", "pod"+uid)
	usageFile, statFile, key := filepath.Join("/sys/fs/cgroup", rel, "memory.current"), filepath.Join("/sys/fs/cgroup", rel, "memory.stat"), "inactive_file"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		dir := filepath.Join("/sys/fs/cgroup/memory", rel)
		usageFile, statFile, key = filepath.Join(dir, "memory.usage_in_bytes"), filepath.Join(dir, "memory.stat"), "total_inactive_file"
	}
	b, err := os.ReadFile(usageFile)
	if err != nil {
		return 0, err
	}
	usage, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, err
	}
	st, err := os.ReadFile(statFile)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			inactive, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0, err
			}
			if inactive > usage {
				return 0, nil
			}
			return usage - inactive, nil
		}
	}
	return 0, fmt.Errorf("%s has no %s", statFile, key)
}
