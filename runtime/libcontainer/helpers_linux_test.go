package libcontainer

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/cgroups"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/nettools"
	"github.com/skiff-io/skiff/runtime/image"
	"github.com/skiff-io/skiff/runtime/testutil"
)

func TestMain(m *testing.M) {
	// The test binary is re-executed as container init and as shim.
	InitIfRequested()
	if os.Getenv("SKIFF_TEST_AGENT") != "" {
		os.Exit(testAgent())
	}
	os.Exit(m.Run())
}

// testAgent is a stand-in agent process (the test binary re-executed): it
// starts a pod with one long-running container over the data dir of
// SKIFF_TEST_DATA, prints the container ID and waits to be killed.
func testAgent() int {
	dataDir := os.Getenv("SKIFF_TEST_DATA")
	images, err := image.New(image.Options{Root: filepath.Join(dataDir, "agent", "images"), DockerConfig: filepath.Join(dataDir, "none.json")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bridge, err := nettools.NewBridge(nettools.BridgeConfig{PodCIDR: "10.42.0.0/24", StateDir: filepath.Join(dataDir, "agent", "ipam"), HostNetNS: os.Getenv("SKIFF_TEST_HOSTNS")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rt, err := New(Config{DataDir: dataDir, Images: images, Network: bridge, CgroupRoot: os.Getenv("SKIFF_TEST_CGROUPS")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	cfg := podConfig("survivor")
	sb, err := rt.RunPodSandbox(ctx, cfg, "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	id, err := rt.CreateContainer(ctx, sb, ctrConfig("app", 0, "sleep", "1000"), cfg)
	if err == nil {
		err = rt.StartContainer(ctx, id)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(id)
	select {}
}

const testImage = "example.com/skiff/busybox:test"

// node is a runtime over a fresh data dir, with the busybox test image and
// a bridge network in a network namespace of its own acting as the node's.
type node struct {
	t       testing.TB
	dataDir string
	images  *image.Store
	bridge  *nettools.Bridge
	rt      *Runtime
	cgroups string // the test's cgroup root
	hostNS  string
	binary  string // the shim binary: the small one (smallShim)
}

var (
	archiveOnce sync.Once
	archivePath string
	archiveErr  error
)

// busyboxArchive builds the test image once per test binary.
func busyboxArchive(t testing.TB) string {
	t.Helper()
	bb := testutil.Busybox(t)
	archiveOnce.Do(func() {
		dir, err := os.MkdirTemp("", "skiff-image-")
		if err != nil {
			archiveErr = err
			return
		}
		img, err := testutil.BusyboxImage(bb, v1.Config{Cmd: []string{"sh"}})
		if err != nil {
			archiveErr = err
			return
		}
		archivePath = filepath.Join(dir, "busybox.tar")
		archiveErr = testutil.WriteDockerArchive(archivePath, testImage, img)
	})
	if archiveErr != nil {
		t.Fatal(archiveErr)
	}
	return archivePath
}

func newNode(t testing.TB) *node {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs real containers (namespaces, cgroups, overlay mounts)")
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		t.Skip("needs cgroups")
	}
	archive := busyboxArchive(t)
	dataDir := t.TempDir()
	n := &node{t: t, dataDir: dataDir, cgroups: "/skiff-test-" + randHex(4) + "/kubepods", binary: smallShim(t)}
	var err error
	n.images, err = image.New(image.Options{Root: filepath.Join(dataDir, "agent", "images"), DockerConfig: filepath.Join(dataDir, "none.json")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.images.Import(context.Background(), archive); err != nil {
		t.Fatal(err)
	}
	n.hostNS = filepath.Join(dataDir, "hostns")
	if err := nettools.NewNetNS(n.hostNS); err != nil {
		t.Fatal(err)
	}
	n.bridge, err = nettools.NewBridge(nettools.BridgeConfig{PodCIDR: "10.42.0.0/24", StateDir: filepath.Join(dataDir, "agent", "ipam"), HostNetNS: n.hostNS})
	if err != nil {
		t.Fatal(err)
	}
	n.rt = n.newRuntime()
	t.Cleanup(func() { n.cleanup(t) })
	return n
}

func (n *node) newRuntime() *Runtime {
	rt, err := New(Config{DataDir: n.dataDir, Images: n.images, Network: n.bridge, CgroupRoot: n.cgroups, LogMaxSize: 1 << 20, Binary: n.binary})
	if err != nil {
		n.t.Fatal(err)
	}
	return rt
}

// cleanup removes every sandbox (containers, mounts, namespaces, cgroups)
// and the test's cgroup root and host namespace, even after a failure.
func (n *node) cleanup(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := New(Config{DataDir: n.dataDir, Images: n.images, Network: n.bridge, CgroupRoot: n.cgroups, Binary: n.binary})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	sbs, _ := rt.ListPodSandbox(ctx, nil)
	for _, sb := range sbs {
		if err := rt.RemovePodSandbox(ctx, sb.Id); err != nil {
			t.Errorf("cleanup: remove sandbox %s: %v", sb.Id, err)
		}
	}
	cs, _ := rt.ListContainers(ctx, nil)
	for _, c := range cs {
		if err := rt.RemoveContainer(ctx, c.Id); err != nil {
			t.Errorf("cleanup: remove container %s: %v", c.Id, err)
		}
	}
	for _, sub := range []string{"guaranteed", "burstable", "besteffort", ""} {
		_ = removeCgroup(filepath.Join(n.cgroups, sub))
	}
	_ = removeCgroup(filepath.Dir(n.cgroups))
	if err := nettools.DeleteNetNS(n.hostNS); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if m := mountsUnder(n.dataDir); len(m) > 0 {
		t.Errorf("cleanup: mounts left under the data dir: %v", m)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: name + "-" + randHex(4)},
		Hostname: name,
		Labels:   map[string]string{"app": name},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{}},
	}
}

func ctrConfig(name string, attempt uint32, cmd ...string) *runtimeapi.ContainerConfig {
	cc := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name, Attempt: attempt},
		Image:    &runtimeapi.ImageSpec{Image: testImage},
		Command:  cmd,
		LogPath:  fmt.Sprintf("%s/%d.log", name, attempt),
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NoNewPrivs: true,
			Seccomp:    &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
		}},
	}
	if !seccompBuilt {
		cc.Linux.SecurityContext.Seccomp.ProfileType = runtimeapi.SecurityProfile_Unconfined
	}
	return cc
}

// runPod starts a sandbox.
func (n *node) runPod(name string) (string, *runtimeapi.PodSandboxConfig) {
	n.t.Helper()
	cfg := podConfig(name)
	id, err := n.rt.RunPodSandbox(context.Background(), cfg, "")
	if err != nil {
		n.t.Fatal(err)
	}
	return id, cfg
}

// start creates and starts a container.
func (n *node) start(sandboxID string, sbCfg *runtimeapi.PodSandboxConfig, cc *runtimeapi.ContainerConfig) string {
	n.t.Helper()
	ctx := context.Background()
	id, err := n.rt.CreateContainer(ctx, sandboxID, cc, sbCfg)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := n.rt.StartContainer(ctx, id); err != nil {
		n.t.Fatal(err)
	}
	return id
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *node) status(id string) *runtimeapi.ContainerStatus {
	n.t.Helper()
	st, err := n.rt.ContainerStatus(context.Background(), id, true)
	if err != nil {
		n.t.Fatal(err)
	}
	return st.Status
}

func (n *node) waitExited(id string) *runtimeapi.ContainerStatus {
	n.t.Helper()
	var st *runtimeapi.ContainerStatus
	waitFor(n.t, 30*time.Second, "container "+id[:12]+" to exit", func() bool {
		st = n.status(id)
		return st.State == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	return st
}

// mountsUnder lists mount points below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	return out
}

// cgroupDirs lists the hierarchies in which the cgroup path exists.
func cgroupDirs(p string) []string {
	var out []string
	if cgroups.IsCgroup2UnifiedMode() {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", p)); err == nil {
			out = append(out, "unified")
		}
		return out
	}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", e.Name(), p)); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) || err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}
