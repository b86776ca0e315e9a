package libcontainer

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/capability"
	"github.com/moby/sys/devices"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ownCaps returns this process's bounding set as a /proc status mask and
// whether it may lower oom_score_adj, and its own oom_score_adj.
func ownCaps(t *testing.T) (bounding uint64, sysResource bool, oomAdj int) {
	t.Helper()
	c, err := capability.NewPid2(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	for _, cp := range capability.ListKnown() {
		if c.Get(capability.BOUNDING, cp) {
			bounding |= 1 << uint(cp)
		}
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	oomAdj, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return bounding, c.Get(capability.EFFECTIVE, capability.CAP_SYS_RESOURCE), oomAdj
}

// runOnce runs a container to completion and returns its output.
func (n *node) runOnce(sb string, cfg *runtimeapi.PodSandboxConfig, cc *runtimeapi.ContainerConfig) string {
	n.t.Helper()
	ctx := context.Background()
	id, err := n.rt.CreateContainer(ctx, sb, cc, cfg)
	if err == nil {
		err = n.rt.StartContainer(ctx, id)
	}
	if err != nil {
		n.t.Fatalf("%s: %v", cc.Metadata.Name, err)
	}
	st := n.waitExited(id)
	b, err := os.ReadFile(st.LogPath)
	if err != nil {
		n.t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.SplitN(line, " ", 4); len(f) == 4 {
			out = append(out, f[3])
		}
	}
	if st.ExitCode != 0 {
		n.t.Fatalf("%s exited %d (%s): %s", cc.Metadata.Name, st.ExitCode, st.Message, strings.Join(out, "\n"))
	}
	return strings.Join(out, "\n")
}

// TestPrivilegedContainerRuns: a privileged container (with the BestEffort
// resources the agent gives it) starts, opens /dev/null and /dev/zero,
// sees the host's device nodes and holds every capability the host has.
func TestPrivilegedContainerRuns(t *testing.T) {
	n := newNode(t)
	sb, cfg := n.runPod("priv")
	host, err := devices.HostDevices()
	if err != nil {
		t.Fatal(err)
	}
	var extra string // a host device the unprivileged default set lacks
	for _, d := range host {
		if !slices.Contains([]string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx"}, d.Path) &&
			strings.Count(d.Path, "/") == 2 {
			extra = d.Path
			break
		}
	}
	if extra == "" {
		t.Skip("the host has no device beyond the default set")
	}
	cc := ctrConfig("app", 0, "sh", "-c", "cat /dev/null && head -c 4 /dev/zero | wc -c && ls -l "+extra+" && grep CapEff /proc/self/status")
	cc.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true}
	cc.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 2, CpuPeriod: 100000, OomScoreAdj: 1000}
	out := n.runOnce(sb, cfg, cc)
	bounding, _, _ := ownCaps(t)
	if want := fmt.Sprintf("CapEff:\t%016x", bounding); !strings.Contains(out, "4\n") || !strings.Contains(out, extra) || !strings.Contains(out, want) {
		t.Fatalf("privileged container said:\n%s\nwant /dev/zero read, %s listed, %s", out, extra, want)
	}
}

// TestGuaranteedPodRuns: a Guaranteed container (requests = limits, the
// kubelet's oom_score_adj -997) runs on a host whose root cannot lower its
// oom_score_adj (no CAP_SYS_RESOURCE), with the lowest score it may have;
// a capability the host lacks is dropped instead of failing the start.
func TestGuaranteedPodRuns(t *testing.T) {
	n := newNode(t)
	sb, cfg := n.runPod("guaranteed")
	cc := ctrConfig("app", 0, "sh", "-c", "cat /proc/self/oom_score_adj; grep CapEff /proc/self/status")
	cc.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 102, CpuPeriod: 100000, CpuQuota: 10000,
		MemoryLimitInBytes: 64 << 20, OomScoreAdj: -997}
	cc.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"SYS_RESOURCE", "NET_ADMIN"}}
	out := n.runOnce(sb, cfg, cc)
	bounding, sysResource, own := ownCaps(t)
	wantAdj, wantCaps := -997, uint64(1<<capability.CAP_NET_ADMIN)
	if !sysResource {
		wantAdj = max(-997, own)
	}
	wantCaps |= bounding & (1 << capability.CAP_SYS_RESOURCE)
	if want := fmt.Sprintf("%d\nCapEff:\t%016x", wantAdj, wantCaps); out != want {
		t.Fatalf("guaranteed container said\n%q\nwant\n%q", out, want)
	}
	// The degradation is known to the agent, once, for its Node.
	d := strings.Join(n.rt.Degradations(), "\n")
	if !sysResource && !strings.Contains(d, "no CAP_SYS_RESOURCE") {
		t.Errorf("degradations %q lack CAP_SYS_RESOURCE", d)
	}
	if bounding&(1<<capability.CAP_SYS_RESOURCE) == 0 && !strings.Contains(d, "CAP_SYS_RESOURCE") {
		t.Errorf("degradations %q lack the missing bounding capability", d)
	}
}

// TestMissingSysctlSkipped: a sysctl the host's kernel lacks is skipped
// (with a warning) instead of failing the start; the others are set.
func TestMissingSysctlSkipped(t *testing.T) {
	n := newNode(t)
	cfg := podConfig("sysctls")
	cfg.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.skiff_no_such_sysctl": "1"}
	sb, err := n.rt.RunPodSandbox(context.Background(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if out := n.runOnce(sb, cfg, ctrConfig("app", 0, "cat", "/proc/sys/kernel/shm_rmid_forced")); out != "1" {
		t.Fatalf("kernel.shm_rmid_forced in the container: %q", out)
	}
}
