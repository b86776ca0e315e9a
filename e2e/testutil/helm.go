package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// HelmVersion is the Helm release the e2e tests drive: Helm 4, whose
// install, upgrade and rollback apply server-side by default.
const HelmVersion = "v4.3.2"

// BuildHelm returns the path of a helm binary of HelmVersion, built from
// the Go module proxy into the user's cache directory on first use (a few
// minutes) and reused after. The test is skipped with the reason when the
// modules cannot be fetched here.
func BuildHelm(t testing.TB) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("cache dir: %v", err)
	}
	dir := filepath.Join(cache, "skiff-e2e", "helm-"+HelmVersion)
	bin := filepath.Join(dir, "helm")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// go install writes the binary when the build succeeded: a failed
	// or interrupted build leaves nothing to reuse.
	cmd := exec.Command("go", "install", "helm.sh/helm/v4/cmd/helm@"+HelmVersion)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=", "GOTOOLCHAIN=local")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		if bytes.Contains(out, []byte("dial tcp")) || bytes.Contains(out, []byte("no such host")) || bytes.Contains(out, []byte("proxy.golang.org")) {
			t.Skipf("helm %s cannot be built here (no network to the Go module proxy): %s", HelmVersion, out)
		}
		t.Fatalf("go install helm %s: %v\n%s", HelmVersion, err, out)
	}
	t.Logf("built helm %s in %s", HelmVersion, time.Since(start).Round(time.Second))
	return bin
}
