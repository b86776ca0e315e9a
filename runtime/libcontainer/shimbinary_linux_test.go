package libcontainer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/runtime/shimbin"
)

var (
	shimOnce sync.Once
	shimPath string
	shimErr  error
)

// smallShim builds cmd/skiff-shim (the small shim and container-init
// binary that `make build` embeds in skiff) once per test binary, with the
// seccomp tag when this test binary has it. The runtime tests start their
// shims and container inits from it, as skiff does.
func smallShim(t testing.TB) string {
	t.Helper()
	shimOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			shimErr = err
			return
		}
		dir, err := os.MkdirTemp("", "skiff-shim-")
		if err != nil {
			shimErr = err
			return
		}
		shimPath = filepath.Join(dir, "skiff-shim")
		args := []string{"build", "-trimpath", "-o", shimPath}
		if seccompBuilt {
			args = append(args, "-tags", "seccomp")
		}
		cmd := exec.Command(goBin, append(args, "github.com/skiff-io/skiff/cmd/skiff-shim")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			shimErr = &buildError{err: err, out: string(out)}
		}
	})
	if shimErr != nil {
		t.Fatalf("these tests need the small shim binary (go build ./cmd/skiff-shim): %v", shimErr)
	}
	return shimPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }
func (e *buildError) Unwrap() error { return e.err }

// TestShimIsSmallBinary: the shim that runs a container is the small
// binary unpacked into the data dir (its /proc/PID/exe), which links none
// of k8s.io, Prometheus or VictoriaMetrics, and the container keeps its
// hardening (seccomp filter, no-new-privs, bounded capabilities).
func TestShimIsSmallBinary(t *testing.T) {
	n := newNode(t)
	bin, err := os.ReadFile(smallShim(t))
	if err != nil {
		t.Fatal(err)
	}
	installed, err := shimbin.InstallBytes(n.dataDir, bin)
	if err != nil {
		t.Fatal(err)
	}
	n.binary = installed
	n.rt = n.newRuntime()

	ctx := context.Background()
	cfg := podConfig("small")
	sb, err := n.rt.RunPodSandbox(ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	id, err := n.rt.CreateContainer(ctx, sb, ctrConfig("app", 0, "sleep", "1000"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	st, err := n.rt.ContainerStatus(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("state %v", st.Status.State)
	}
	exe, err := os.Readlink("/proc/" + st.Info["shimPid"] + "/exe")
	if err != nil {
		t.Fatal(err)
	}
	if exe != installed {
		t.Fatalf("shim %s runs %s, want the small binary %s", st.Info["shimPid"], exe, installed)
	}
	status, err := os.ReadFile("/proc/" + st.Info["pid"] + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "NoNewPrivs:\t1") {
		t.Errorf("container process without no-new-privs:\n%s", status)
	}
	if seccompBuilt && !strings.Contains(string(status), "Seccomp:\t2") {
		t.Errorf("container process has no seccomp filter:\n%s", status)
	}

	// The binary's package set: runc's libcontainer and the shim only.
	out, err := exec.Command("go", "list", "-deps", "github.com/skiff-io/skiff/cmd/skiff-shim").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "k8s.io/") || strings.Contains(p, "prometheus") || strings.Contains(p, "VictoriaMetrics") {
			t.Errorf("cmd/skiff-shim links %s", p)
		}
	}
}
