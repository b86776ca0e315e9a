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
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestDebugging (issue 17): kubectl debug with an ephemeral container in
// the target's PID namespace, kubectl logs --previous after restarts, and
// /etc/hosts as the kubelet writes it, on a node running real containers.
func TestDebugging(t *testing.T) {
	n := startRealNode(t)
	// Each subtest fails itself through the node's helpers.
	sub := func(t *testing.T) *realNode { c := *n; c.t = t; return &c }
	t.Run("kubectl debug -it --target", func(t *testing.T) { testKubectlDebug(t, sub(t)) })
	t.Run("logs --previous", func(t *testing.T) { testLogsPrevious(t, sub(t)) })
	t.Run("/etc/hosts", func(t *testing.T) { testEtcHosts(t, sub(t)) })
	t.Run("pods/proxy from a master without an agent", func(t *testing.T) { testProxyNoAgent(t, sub(t)) })
}

// testProxyNoAgent: this node's master runs with --disable-agent in
// another network namespace, with no route to pod addresses; pods/proxy
// still reaches the pod, through its kubelet.
func testProxyNoAgent(t *testing.T, n *realNode) {
	p := bbPod("web", corev1.RestartPolicyAlways, "exec httpd -f -p 8080 -h /www")
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
	n.create(p)
	n.waitPod("web", "running", phase(corev1.PodRunning))
	hc := n.master.HTTPClient()
	for _, path := range []string{"/api/v1/namespaces/default/pods/web:8080/proxy/index.html", "/api/v1/namespaces/default/pods/web/proxy/"} {
		err := testutil.Poll(30*time.Second, func() error {
			code, body, err := httpGetBody(hc, n.master.URL()+path)
			if err != nil {
				return err
			}
			if code != http.StatusOK || body != "hello from httpd\n" {
				return fmt.Errorf("GET %s: %d %s", path, code, body)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%v\n--- agent log ---\n%s", err, n.agent.LogTail(20))
		}
	}
	n.deletePod("web")
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testKubectlDebug(t *testing.T, n *realNode) {
	n.create(bbPod("target", corev1.RestartPolicyAlways, "exec sleep 31337"))
	n.waitPod("target", "running", phase(corev1.PodRunning))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", n.master.Kubeconfig(), "debug", "-it", "target",
		"--image="+busyboxRef, "--target=main", "-c", "debugger", "--", "sh")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	// The shell reads what we type once kubectl has attached: ask for the
	// processes it sees and PID 1's command line, until the target's
	// sleep shows.
	err = testutil.Poll(60*time.Second, func() error {
		if _, err := io.WriteString(stdin, "ps; echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline)\n"); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if s := out.String(); !strings.Contains(s, "sleep 31337") || !strings.Contains(s, "pid1=sleep 31337") {
			return fmt.Errorf("the debug shell does not see the target's process yet:\n%s", s)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n--- agent log ---\n%s", err, n.agent.LogTail(30))
	}
	if _, err := io.WriteString(stdin, "exit\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("kubectl debug: %v\n%s", err, out.String())
		}
	case <-ctx.Done():
		t.Fatalf("kubectl debug did not end after exit:\n%s", out.String())
	}
	// The ephemeral container is in the pod's status, terminated, and
	// never restarted.
	p := n.waitPod("target", "debugger terminated", func(p *corev1.Pod) error {
		for _, cs := range p.Status.EphemeralContainerStatuses {
			if cs.Name == "debugger" && cs.State.Terminated != nil {
				return nil
			}
		}
		return fmt.Errorf("ephemeral statuses %+v", p.Status.EphemeralContainerStatuses)
	})
	if len(p.Spec.EphemeralContainers) != 1 || p.Spec.EphemeralContainers[0].TargetContainerName != "main" {
		t.Fatalf("ephemeral containers %+v", p.Spec.EphemeralContainers)
	}
	if cs := p.Status.EphemeralContainerStatuses[0]; cs.RestartCount != 0 {
		t.Fatalf("ephemeral container restarted: %+v", cs)
	}
	n.deletePod("target")
}

func testLogsPrevious(t *testing.T, n *realNode) {
	// Each run prints its number (kept in an emptyDir) and fails; with the
	// test agent's 1 s back-off the pod restarts every few seconds.
	p := bbPod("crasher", corev1.RestartPolicyAlways,
		`n=$(cat /data/n 2>/dev/null || echo 0); echo "run $n"; echo $((n+1)) > /data/n; exit 1`)
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	n.create(p)
	// While the pod waits to restart after its latest run, that run is its
	// last terminated one: --previous shows it. The status before and after
	// the read must agree, or the pod moved on and we look again.
	err := testutil.Poll(90*time.Second, func() error {
		before, err := n.cs.CoreV1().Pods("default").Get(context.Background(), "crasher", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cs := before.Status.ContainerStatuses
		if len(cs) != 1 || cs[0].RestartCount < 2 || cs[0].State.Waiting == nil || cs[0].LastTerminationState.Terminated == nil {
			return fmt.Errorf("not waiting after two restarts yet: %+v", cs)
		}
		out, err := n.kubectl("logs", "--previous", "crasher")
		if err != nil {
			return fmt.Errorf("logs --previous: %v: %s", err, out)
		}
		after, err := n.cs.CoreV1().Pods("default").Get(context.Background(), "crasher", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ac := after.Status.ContainerStatuses
		if len(ac) != 1 || ac[0].RestartCount != cs[0].RestartCount || ac[0].State.Waiting == nil {
			return fmt.Errorf("the pod restarted meanwhile")
		}
		if want := fmt.Sprintf("run %d\n", cs[0].RestartCount); out != want {
			t.Fatalf("logs --previous after %d restarts = %q, want the last run's %q", cs[0].RestartCount, out, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n--- agent log ---\n%s", err, n.agent.LogTail(30))
	}
	n.deletePod("crasher")
}

func testEtcHosts(t *testing.T, n *realNode) {
	aliases := []corev1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"a.example", "b.example"}}, {IP: "10.1.2.4", Hostnames: []string{"c.example"}}}
	p := bbPod("hosts", corev1.RestartPolicyNever, "cat /etc/hosts")
	p.Spec.Hostname, p.Spec.Subdomain, p.Spec.HostAliases = "h1", "sub", aliases
	n.create(p)
	p = n.waitPod("hosts", "succeeded", phase(corev1.PodSucceeded))
	got, err := n.kubectl("logs", "hosts")
	if err != nil {
		t.Fatalf("logs: %v: %s", err, got)
	}
	want := []string{
		"# Kubernetes-managed hosts file.",
		"127.0.0.1\tlocalhost",
		"::1\tlocalhost ip6-localhost ip6-loopback",
		"fe00::0\tip6-localnet",
		"fe00::0\tip6-mcastprefix",
		"fe00::1\tip6-allnodes",
		"fe00::2\tip6-allrouters",
		p.Status.PodIP + "\th1.sub.default.svc.cluster.local\th1",
		"",
		"# Entries added by HostAliases.",
		"10.1.2.3\ta.example\tb.example",
		"10.1.2.4\tc.example",
	}
	compareLines(t, "pod /etc/hosts", got, want)
	n.deletePod("hosts")

	// A host-network pod gets the node's file under the kubelet's header
	// (host namespaces need the privileged Pod Security level).
	if out, err := n.kubectl("label", "--overwrite", "namespace", "default", "pod-security.kubernetes.io/enforce=privileged"); err != nil {
		t.Fatalf("label namespace: %v: %s", err, out)
	}
	p = bbPod("hosts-hostnet", corev1.RestartPolicyNever, "cat /etc/hosts")
	p.Spec.HostNetwork, p.Spec.HostAliases = true, aliases[1:]
	n.create(p)
	n.waitPod("hosts-hostnet", "succeeded", phase(corev1.PodSucceeded))
	got, err = n.kubectl("logs", "hosts-hostnet")
	if err != nil {
		t.Fatalf("logs: %v: %s", err, got)
	}
	node, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	want = append([]string{"# Kubernetes-managed hosts file (host network)."}, strings.Split(strings.TrimSuffix(string(node), "\n"), "\n")...)
	want = append(want, "", "# Entries added by HostAliases.", "10.1.2.4\tc.example")
	compareLines(t, "host-network /etc/hosts", got, want)
	n.deletePod("hosts-hostnet")
}

// compareLines checks got line by line against want.
func compareLines(t *testing.T, what, got string, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	for i := 0; i < len(lines) || i < len(want); i++ {
		var g, w string
		if i < len(lines) {
			g = lines[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Fatalf("%s line %d = %q, want %q\n--- got ---\n%s", what, i+1, g, w, got)
		}
	}
}

// kubectlProxy starts `kubectl proxy` on a random port of 127.0.0.1 and
// returns its base URL; it is stopped in t.Cleanup.
func kubectlProxy(t *testing.T, kubeconfig, server string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "--server", server, "proxy", "--address=127.0.0.1", "--port=0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	// "Starting to serve on 127.0.0.1:PORT"
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if i := strings.Index(sc.Text(), "Starting to serve on "); i >= 0 {
				lines <- strings.TrimSpace(sc.Text()[i+len("Starting to serve on "):])
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case addr := <-lines:
		return "http://" + addr
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl proxy did not start")
	}
	return ""
}

// httpGetBody GETs url and returns the status and body.
func httpGetBody(client *http.Client, url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
