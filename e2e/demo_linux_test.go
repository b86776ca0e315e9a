package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestMakeRunDemo replays the README's quick start in a test namespace:
// `make run`'s setup (one master advertised on 127.0.0.1 with its
// embedded agent, the demo image dropped in the node's image directory),
// `kubectl apply -f docs/demo/`, and each command the README gives: logs,
// exec with in-cluster DNS, port-forward and curl.
func TestMakeRunDemo(t *testing.T) {
	needRealContainers(t)
	dir := t.TempDir()
	hello := filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-trimpath", "-o", hello, "../docs/demo/hello")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the demo binary: %v\n%s", err, out)
	}
	archive := filepath.Join(dir, "skiff-demo.tar")
	if out, err := exec.Command(testutil.Binary(t), "demo-image", "--binary", hello, "--ref", "skiff.local/demo:1", "--out", archive).CombinedOutput(); err != nil {
		t.Fatalf("skiff demo-image: %v\n%s", err, out)
	}
	c := testutil.NewNetCluster(t, testutil.NetClusterOptions{Nodes: 1, ImageArchives: []string{archive}, LoopbackAPI: true})
	t.Cleanup(func() { _, _ = c.Kubectl("delete", "namespace", "demo", "--wait=false") })

	out, err := c.Kubectl("apply", "-f", "../docs/demo/")
	if err != nil {
		t.Fatalf("kubectl apply -f docs/demo/: %v\n%s", err, out)
	}
	if strings.Contains(out, "Warning") {
		t.Errorf("the demo draws warnings (it should meet the restricted Pod Security level):\n%s", out)
	}
	if out, err := c.Kubectl("rollout", "status", "-n", "demo", "deploy/hello", "--timeout=120s"); err != nil {
		t.Fatalf("rollout: %v\n%s\n--- node log ---\n%s", err, out, c.NodeLog(0, 40))
	}
	// The node's container shims run the small skiff-shim binary that
	// skiff unpacked into its data dir, not skiff itself.
	dataDir := c.Master.DataDir // node 1 is the master's embedded agent
	shims := processesWhere(func(cmdline []byte) bool {
		args := bytes.Split(cmdline, []byte{0})
		return len(args) > 2 && string(args[0]) == "skiff-shim" && strings.HasPrefix(string(args[2]), dataDir+"/")
	})
	if len(shims) == 0 {
		t.Errorf("no container shim of %s found", dataDir)
	}
	for _, pid := range shims {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || !strings.HasPrefix(exe, filepath.Join(dataDir, "bin", "skiff-shim-")) {
			t.Errorf("shim %d runs %q (%v), want %s/bin/skiff-shim-<sum> (is %s built with `make build`?)", pid, exe, err, dataDir, testutil.Binary(t))
		}
	}
	if out, err := c.Kubectl("logs", "-n", "demo", "deploy/hello"); err != nil || !strings.Contains(out, "listening on :8080") {
		t.Errorf("kubectl logs deploy/hello: %v\n%s", err, out)
	}
	var last string
	if err := testutil.Poll(60*time.Second, func() error {
		out, err := c.Kubectl("exec", "-n", "demo", "deploy/hello", "--", "/hello", "get", "http://hello.demo.svc.cluster.local:8080/")
		last = out
		if err != nil || !strings.Contains(out, "Hello from Skiff") {
			return fmt.Errorf("%v", err)
		}
		return nil
	}); err != nil {
		t.Errorf("in-cluster request to the hello Service: %v\n%s", err, last)
	}

	// port-forward on a free local port, then curl it (the README waits
	// for the forward the same way: until the first request answers).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pf := exec.CommandContext(ctx, "kubectl", "--kubeconfig", c.Master.Kubeconfig(), "--server", c.Master.URL(),
		"port-forward", "-n", "demo", "svc/hello", ":8080")
	stdout, err := pf.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = pf.Wait() }()
	portCh := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				portCh <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var port string
	select {
	case port = <-portCh:
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl port-forward printed no local port in 30 s")
	}
	if err := testutil.Poll(30*time.Second, func() error {
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = string(b)
		if !strings.Contains(last, "Hello from Skiff") {
			return fmt.Errorf("answer %q", last)
		}
		return nil
	}); err != nil {
		t.Errorf("curl through kubectl port-forward: %v", err)
	}
	t.Logf("through port-forward: %s", strings.TrimSpace(last))
}
