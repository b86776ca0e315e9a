package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// UpgradeFrom is the release rolling upgrades start from (TestRollingUpgrade,
// the chaos suite's rolling-upgrade nemesis): the last commit that landed
// before Secrets encryption, cluster snapshots and the audit log (formats
// it does not know: an upgrade must not feed them to it while it runs).
const UpgradeFrom = "abeee55"

// BuildRelease builds skiff at commit from this repository's history, in a
// temporary worktree.
func BuildRelease(t testing.TB, commit string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		t.Skipf("commit %s is not in this checkout's history (a shallow clone?): cannot build the release to upgrade from", commit)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if out, err := exec.Command("git", "-C", root, "worktree", "add", "--detach", src, commit).CombinedOutput(); err != nil {
		t.Fatalf("git worktree add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("git", "-C", root, "worktree", "remove", "--force", src).Run() })
	bin := filepath.Join(dir, "skiff-"+commit)
	cmd := exec.Command("go", "build", "-tags", "seccomp", "-trimpath", "-ldflags", "-X main.version="+commit, "-o", bin, "./cmd/skiff")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		if bytes.Contains(out, []byte("dial tcp")) || bytes.Contains(out, []byte("no such host")) || bytes.Contains(out, []byte("GOFLAGS=-mod=mod")) {
			t.Skipf("the modules of %s cannot be fetched here (no network to the Go proxy): %s", commit, out)
		}
		t.Fatalf("build %s: %v\n%s", commit, err, out)
	}
	t.Logf("built %s in %s", commit, time.Since(start).Round(time.Second))
	return bin
}
