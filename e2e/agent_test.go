package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/skiff-io/skiff/client"
	"github.com/skiff-io/skiff/e2e/testutil"
)

// Hollow nodes: real `skiff server` and `skiff agent --runtime fake`
// processes; containers are simulated, everything else (bootstrap, node
// registration, leases, pod IPAM, pod workers, status, logs/exec through
// the API server's proxy) is real.

func waitNodeReady(t *testing.T, cs kubernetes.Interface, name string) *corev1.Node {
	t.Helper()
	var node *corev1.Node
	testutil.WaitFor(t, 60*time.Second, "node "+name+" Ready with a pod CIDR", func() error {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node = n
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && n.Spec.PodCIDR != "" {
				return nil
			}
		}
		return fmt.Errorf("conditions %v podCIDR %q", n.Status.Conditions, n.Spec.PodCIDR)
	})
	return node
}

func waitPodPhase(t *testing.T, cs kubernetes.Interface, ns, name string, phase corev1.PodPhase) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("pod %s %s", name, phase), func() error {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pod = p
		if p.Status.Phase != phase {
			return fmt.Errorf("phase %q", p.Status.Phase)
		}
		return nil
	})
	return pod
}

func fakePod(name, node string, policy corev1.RestartPolicy, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: node, RestartPolicy: policy, Containers: []corev1.Container{{
			Name: "main", Image: "example.com/hollow:1", Args: args,
		}}},
	}
}

func TestHollowNode(t *testing.T) {
	ctx := context.Background()
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1"})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()

	a1 := testutil.NewAgent(t, testutil.AgentOptions{Name: "hollow-1", Server: m.URL(), Token: m.AgentToken()})
	a1.Start()
	n1 := waitNodeReady(t, cs, "hollow-1")
	// An agent set up before agent tokens, with the server token: it still
	// joins, with a node credential only (docs/security.md).
	a2 := testutil.NewAgent(t, testutil.AgentOptions{Name: "hollow-2", Server: m.URL(), Token: m.Token()})
	a2.Start()
	n2 := waitNodeReady(t, cs, "hollow-2")

	// Registration: capacity, address, kubelet endpoint; distinct /24s
	// of the cluster CIDR.
	if n1.Status.Addresses[0].Address != a1.IP || n1.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 {
		t.Errorf("node addresses %v endpoints %v", n1.Status.Addresses, n1.Status.DaemonEndpoints)
	}
	if q := n1.Status.Capacity[corev1.ResourcePods]; q.Value() != 110 {
		t.Errorf("pods capacity %v", q.Value())
	}
	c1, c2 := netip.MustParsePrefix(n1.Spec.PodCIDR), netip.MustParsePrefix(n2.Spec.PodCIDR)
	cluster := netip.MustParsePrefix("10.42.0.0/16")
	if c1 == c2 || c1.Bits() != 24 || !cluster.Contains(c1.Addr()) || !cluster.Contains(c2.Addr()) {
		t.Errorf("pod CIDRs %s and %s", c1, c2)
	}

	// The Lease is renewed.
	l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, "hollow-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := l.Spec.RenewTime.Time
	testutil.WaitFor(t, 20*time.Second, "lease renewal", func() error {
		l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, "hollow-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !l.Spec.RenewTime.After(first) {
			return fmt.Errorf("not renewed since %v", first)
		}
		return nil
	})

	// Pods run to Running and to Succeeded.
	if _, err := cs.CoreV1().Pods("default").Create(ctx, fakePod("web", "hollow-1", corev1.RestartPolicyAlways, "log=hello from web", "http=8080"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, fakePod("job", "hollow-1", corev1.RestartPolicyNever, "exit=0", "after=500ms"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	web := waitPodPhase(t, cs, "default", "web", corev1.PodRunning)
	if !c1.Contains(netip.MustParseAddr(web.Status.PodIP)) {
		t.Errorf("pod IP %s not in the node's pod CIDR %s", web.Status.PodIP, c1)
	}
	waitPodPhase(t, cs, "default", "job", corev1.PodSucceeded)

	// Node bootstrap refuses a token for another CA before sending the
	// secret, and a wrong secret.
	hash, _, _ := strings.Cut(strings.TrimPrefix(m.Token(), "K10"), "::")
	if _, err := client.BootstrapNode(ctx, m.URL(), "K10"+strings.Repeat("0", len(hash))+"::server:whatever", "intruder", nil); err == nil {
		t.Errorf("bootstrap with a token pinning another CA succeeded")
	}
	if _, err := client.BootstrapNode(ctx, m.URL(), "K10"+hash+"::server:wrong-secret", "intruder", nil); !apierrors.IsUnauthorized(err) {
		t.Errorf("bootstrap with a wrong secret: %v, want 401", err)
	}

	// What the node's own credentials may do.
	nodeCS := a1.NodeClientset(m.URL())
	if _, err := nodeCS.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Errorf("node cannot read its own pod: %v", err)
	}
	if _, err := nodeCS.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node listing secrets: %v, want Forbidden", err)
	}
	if err := nodeCS.CoreV1().Nodes().Delete(ctx, "hollow-2", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node deleting another node: %v, want Forbidden", err)
	}
	// NodeRestriction: the name in the body is checked too.
	if _, err := nodeCS.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "impostor"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node creating another node: %v, want Forbidden", err)
	}
	if _, err := nodeCS.CoordinationV1().Leases("kube-node-lease").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "impostor"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node creating another node's lease: %v, want Forbidden", err)
	}

	// logs and exec through the API server's proxy to the kubelet.
	if _, err := exec.LookPath("kubectl"); err == nil {
		kc := func(args ...string) (string, error) {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(cctx, "kubectl", append([]string{"--kubeconfig", m.Kubeconfig()}, args...)...).CombinedOutput()
			return string(out), err
		}
		out, err := kc("logs", "web")
		if err != nil || !strings.Contains(out, "hello from web") {
			t.Errorf("kubectl logs: %v: %s", err, out)
		}
		out, err = kc("exec", "web", "--", "echo", "hi")
		if err != nil || strings.TrimSpace(out) != "hi" {
			t.Errorf("kubectl exec: %v: %s", err, out)
		}
		_, err = kc("exec", "web", "--", "exit", "3")
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("kubectl exec exit code: %v", err)
		}
		// The fake container echoes what is attached to its stdin.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		attach := exec.CommandContext(cctx, "kubectl", "--kubeconfig", m.Kubeconfig(), "attach", "-i", "web")
		attach.Stdin = strings.NewReader("hello attach\n")
		outb, err := attach.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(outb), "hello attach") {
			t.Errorf("kubectl attach: %v: %s", err, outb)
		}
	} else {
		t.Log("kubectl not found: logs and exec through the API server not checked here")
	}

	// Exec and attach over WebSocket v5 only (no SPDY fallback), as
	// kubectl 1.30+ asks first.
	checkWebSocketV5(t, m, cs)
	checkLogsOverWebSocket(t, m, cs, "hello from web")

	// Graceful deletion: the agent stops the pod and deletes it for good.
	if err := cs.CoreV1().Pods("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "pod web gone", func() error {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	checkNodePodWrites(t, nodeCS, a2.NodeClientset(m.URL()))

	// Restarted with the saved credentials (no token needed).
	a1.Stop()
	var args []string
	for i := 0; i < len(a1.Args); i++ {
		if a1.Args[i] == "--token" {
			i++ // drop the token and its value
			continue
		}
		args = append(args, a1.Args[i])
	}
	a1.Args = args
	a1.Start()
	testutil.WaitFor(t, 30*time.Second, "agent restarted", func() error {
		if !a1.Running() {
			return fmt.Errorf("agent exited:\n%s", a1.LogTail(20))
		}
		if !strings.Contains(a1.LogTail(50), "node registered") {
			return fmt.Errorf("not registered yet")
		}
		return nil
	})
}

func TestEmbeddedAgentBindsPods(t *testing.T) {
	ctx := context.Background()
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "solo", Agent: true, Args: []string{"--runtime", "fake"}})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	n := waitNodeReady(t, cs, "solo")
	if n.Labels["node-role.kubernetes.io/control-plane"] != "true" {
		t.Errorf("labels %v", n.Labels)
	}
	// No nodeName: the scheduler binds it to the only node.
	if _, err := cs.CoreV1().Pods("default").Create(ctx, fakePod("unbound", "", corev1.RestartPolicyAlways), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPodPhase(t, cs, "default", "unbound", corev1.PodRunning)
	if p.Spec.NodeName != "solo" {
		t.Errorf("bound to %q", p.Spec.NodeName)
	}
}

// checkWebSocketV5 runs exec and attach in pod default/web through the API
// server with client-go's WebSocket executor, which speaks only
// v5.channel.k8s.io and does not fall back to SPDY.
func checkWebSocketV5(t *testing.T, m *testutil.Master, cs *kubernetes.Clientset) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(sub string, opts runtime.Object, stdin io.Reader) (string, string, error) {
		u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("web").
			SubResource(sub).VersionedParams(opts, scheme.ParameterCodec).URL()
		ex, err := remotecommand.NewWebSocketExecutor(m.RESTConfig(), "GET", u.String())
		if err != nil {
			return "", "", err
		}
		var out, errb bytes.Buffer
		err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: &out, Stderr: &errb})
		return out.String(), errb.String(), err
	}
	out, _, err := run("exec", &corev1.PodExecOptions{Command: []string{"echo", "over websocket"}, Stdout: true, Stderr: true}, nil)
	if err != nil || strings.TrimSpace(out) != "over websocket" {
		t.Errorf("websocket exec: %v: %q", err, out)
	}
	// stdin is half-closed with the v5 CLOSE signal: cat sees EOF and ends.
	out, _, err = run("exec", &corev1.PodExecOptions{Command: []string{"cat"}, Stdin: true, Stdout: true, Stderr: true}, strings.NewReader("piped through v5\n"))
	if err != nil || out != "piped through v5\n" {
		t.Errorf("websocket exec with stdin: %v: %q", err, out)
	}
	_, _, err = run("exec", &corev1.PodExecOptions{Command: []string{"exit", "3"}, Stdout: true, Stderr: true}, nil)
	var exitErr utilexec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 3 {
		t.Errorf("websocket exec exit code: %v, want exit status 3", err)
	}
	out, _, err = run("attach", &corev1.PodAttachOptions{Stdin: true, Stdout: true, Stderr: true}, strings.NewReader("hello websocket attach\n"))
	if err != nil || !strings.Contains(out, "hello websocket attach") {
		t.Errorf("websocket attach: %v: %q", err, out)
	}

	// Port forwarding tunneled in a WebSocket (kubectl 1.31+), without the
	// SPDY fallback: an HTTP request through the forwarded port.
	pfURL := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("web").SubResource("portforward").URL()
	dialer, err := portforward.NewSPDYOverWebsocketDialer(pfURL, m.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	stop, ready := make(chan struct{}), make(chan struct{})
	defer close(stop)
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:8080"}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	pfErr := make(chan error, 1)
	go func() { pfErr <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-pfErr:
		t.Fatalf("websocket port-forward: %v", err)
	case <-ctx.Done():
		t.Fatal("websocket port-forward: not ready")
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		t.Fatalf("forwarded ports %v: %v", ports, err)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", ports[0].Local))
	if err != nil {
		t.Fatalf("GET through websocket port-forward: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "ok from") {
		t.Errorf("websocket port-forward body %q", body)
	}
}

// TestSIGTERMExits: an agent, and a master with its embedded agent, exit
// by themselves on SIGTERM (Stop fails the test if the process had to be
// killed), and the agent restarts at once on its data dir. Before, the
// kubelet server's shutdown waited behind the goroutines it belongs to:
// the agent never exited and its restart found the data dir locked.
func TestSIGTERMExits(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "term", Agent: true, Args: []string{"--runtime", "fake"}})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	waitNodeReady(t, cs, "term")
	a := testutil.NewAgent(t, testutil.AgentOptions{Name: "term-agent", Server: m.URL(), Token: m.Token()})
	a.Start()
	waitNodeReady(t, cs, "term-agent")
	// Pods running on both nodes: each kubelet is past its start-up.
	for _, node := range []string{"term", "term-agent"} {
		if _, err := cs.CoreV1().Pods("default").Create(context.Background(), fakePod("on-"+node, node, corev1.RestartPolicyAlways), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitPodPhase(t, cs, "default", "on-"+node, corev1.PodRunning)
	}

	start := time.Now()
	a.Stop()
	t.Logf("agent exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	a.Start()
	testutil.WaitFor(t, 30*time.Second, "the restarted agent renews its Lease", func() error {
		if !a.Running() {
			return fmt.Errorf("agent exited: %s", a.LogTail(5))
		}
		l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(context.Background(), "term-agent", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime == nil || l.Spec.RenewTime.Time.Before(start) {
			return fmt.Errorf("last renewal %v, before the restart", l.Spec.RenewTime)
		}
		return nil
	})
	// Stopped at once after a start (registering, before its first pod
	// list): it exits by itself too.
	a.Stop()
	for i := 0; i < 3; i++ {
		a.Start()
		a.Stop()
	}
	start = time.Now()
	m.Stop()
	t.Logf("master with its embedded agent exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	if log, err := os.ReadFile(m.LogPath()); err != nil {
		t.Fatal(err)
	} else if bytes.Contains(log, []byte("embedded agent did not stop")) {
		t.Error("the master's embedded agent did not stop on SIGTERM (the master gave up waiting for it)")
	}
}
