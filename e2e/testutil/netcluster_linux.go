package testutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/nettools"
)

// NetClusterOptions configure NewNetCluster.
type NetClusterOptions struct {
	// Nodes is the number of node hosts (default 2): node 0 runs
	// `skiff server` with its embedded agent, the others `skiff agent`.
	Nodes int
	// Args are extra flags for every node's process, server and agents
	// alike (e.g. "--flannel-backend", "host-gw").
	Args []string
	// ServerArgs are extra flags for node 0's `skiff server` only.
	ServerArgs []string
	// ImageArchives (docker or OCI archives) are imported by every node at
	// start, so that pods need no registry.
	ImageArchives []string
	// LoopbackAPI makes the master advertise 127.0.0.1 (its API on all of
	// its host's addresses, the host's in its certificate for the test's
	// clients), as `make run` does: the kubernetes Service's endpoint is
	// then on the loopback.
	LoopbackAPI bool
}

// NetCluster is a cluster of real nodes for network tests (root only):
// a TestNet with one network namespace per node host, each running a real
// skiff process with the libcontainer runtime, so that pod bridges, pod
// addresses, routes and nftables rules all live inside the test's
// namespaces. Node i is named NodeName(i). t.Cleanup deletes every pod
// (while the agents still run, so that their containers, mounts and
// cgroups go), stops the processes and removes the namespaces.
type NetCluster struct {
	Net    *TestNet
	Master *Master
	// Agents[i-1] runs node i (i ≥ 1).
	Agents []*Agent
	// CS is an admin clientset.
	CS kubernetes.Interface

	t TB
}

// NewNetCluster starts the cluster and waits until every node is Ready
// with a podCIDR.
func NewNetCluster(t TB, o NetClusterOptions) *NetCluster {
	t.Helper()
	if o.Nodes <= 0 {
		o.Nodes = 2
	}
	for _, tool := range []string{"nsenter", "kubectl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("net cluster: %s is not installed", tool)
		}
	}
	tn := NewTestNet(t, o.Nodes)
	hosts := tn.Hosts()
	c := &NetCluster{Net: tn, t: t}
	serverArgs := o.ServerArgs
	if o.LoopbackAPI {
		serverArgs = append([]string{"--bind-address", "0.0.0.0", "--advertise-address", "127.0.0.1", "--tls-san", hosts[0].IP}, serverArgs...)
	}
	c.Master = NewMaster(t, MasterOptions{Name: c.NodeName(0), IP: hosts[0].IP, Netns: hosts[0].Netns, Agent: true,
		Args: append(append([]string{"--runtime", "libcontainer", "--node-lease-duration", "4s", "--node-status-interval", "1s"}, o.Args...), serverArgs...)})
	c.copyImages(filepath.Join(c.Master.DataDir, "agent", "images"), o.ImageArchives)
	c.Master.Start()
	c.Master.WaitReady(60 * time.Second)
	c.CS = c.Master.Clientset()
	for i := 1; i < o.Nodes; i++ {
		a := NewAgent(t, AgentOptions{Name: c.NodeName(i), Server: c.Master.URL(), Token: c.Master.AgentToken(), Runtime: "libcontainer",
			IP: hosts[i].IP, Netns: hosts[i].Netns, Args: o.Args})
		c.copyImages(a.ImageDir(), o.ImageArchives)
		a.Start()
		c.Agents = append(c.Agents, a)
	}
	t.Cleanup(c.cleanup)
	for i := 0; i < o.Nodes; i++ {
		c.WaitNodeReady(i)
	}
	return c
}

// NodeName is the name of node i.
func (c *NetCluster) NodeName(i int) string { return fmt.Sprintf("node-%d", i) }

// Nodes is the number of nodes.
func (c *NetCluster) Nodes() int { return len(c.Agents) + 1 }

// NodeNetns is the path of node i's network namespace (for nsenter
// --net, nettools.Do, netlink and nftables handles).
func (c *NetCluster) NodeNetns(i int) string { return "/run/netns/" + c.Net.Hosts()[i].Netns }

// NodeIP is node i's address on the test network (its InternalIP).
func (c *NetCluster) NodeIP(i int) string { return c.Net.Hosts()[i].IP }

func (c *NetCluster) dataDir(i int) string {
	if i == 0 {
		return c.Master.DataDir
	}
	return c.Agents[i-1].DataDir
}

// NodeLog returns the last n lines of node i's process log.
func (c *NetCluster) NodeLog(i, n int) string {
	if i == 0 {
		return c.Master.LogTail(n)
	}
	return c.Agents[i-1].LogTail(n)
}

// StopNode stops node i's process with SIGTERM (a clean shutdown); its
// containers keep running. Node 0 is the master: the API goes with it.
func (c *NetCluster) StopNode(i int) {
	if i == 0 {
		c.Master.Stop()
		return
	}
	c.Agents[i-1].Stop()
}

// StartNode starts node i's process again and waits until it is ready.
func (c *NetCluster) StartNode(i int) {
	c.t.Helper()
	if i == 0 {
		c.Master.Start()
		c.Master.WaitReady(60 * time.Second)
		return
	}
	c.Agents[i-1].Start()
}

// WaitNodeReady waits until node i is Ready and has a podCIDR.
func (c *NetCluster) WaitNodeReady(i int) {
	c.t.Helper()
	name := c.NodeName(i)
	if err := Poll(90*time.Second, func() error {
		n, err := c.CS.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Spec.PodCIDR == "" {
			return errors.New("no podCIDR")
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("not Ready")
	}); err != nil {
		c.t.Fatalf("node %s: %v\n--- log tail ---\n%s", name, err, c.NodeLog(i, 30))
	}
}

// RunPod creates pod (namespace "default" if unset; give spec.nodeName
// to place it) and waits until it runs with every container ready and an
// IP; it returns the pod as stored then.
func (c *NetCluster) RunPod(pod *corev1.Pod) *corev1.Pod {
	c.t.Helper()
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	ctx := context.Background()
	if _, err := c.CS.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	var last *corev1.Pod
	if err := Poll(120*time.Second, func() error {
		p, err := c.CS.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		last = p
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("phase %s, IP %q", p.Status.Phase, p.Status.PodIP)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if !cs.Ready {
				return fmt.Errorf("container %s not ready", cs.Name)
			}
		}
		return nil
	}); err != nil {
		node := 0
		if last != nil {
			fmt.Sscanf(last.Spec.NodeName, "node-%d", &node)
		}
		c.t.Fatalf("pod %s/%s: %v\n--- node %d log ---\n%s", pod.Namespace, pod.Name, err, node, c.NodeLog(node, 30))
	}
	return last
}

// PodNetns returns the path of the running pod's network namespace on its
// node (the runtime's bind mount).
func (c *NetCluster) PodNetns(pod *corev1.Pod) (string, error) {
	var node int
	if _, err := fmt.Sscanf(pod.Spec.NodeName, "node-%d", &node); err != nil || node >= c.Nodes() {
		return "", fmt.Errorf("pod %s is on node %q, not one of this cluster's", pod.Name, pod.Spec.NodeName)
	}
	dir := filepath.Join(c.dataDir(node), "agent", "sandboxes")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "sandbox.json"))
		if err != nil {
			continue
		}
		var sb struct {
			Ready  bool   `json:"ready"`
			NetNS  string `json:"netns"`
			Config struct {
				Metadata struct {
					UID string `json:"uid"`
				} `json:"metadata"`
			} `json:"config"`
		}
		if json.Unmarshal(b, &sb) == nil && sb.Ready && sb.NetNS != "" && sb.Config.Metadata.UID == string(pod.UID) {
			return sb.NetNS, nil
		}
	}
	return "", fmt.Errorf("no ready sandbox of pod %s (uid %s) on %s", pod.Name, pod.UID, pod.Spec.NodeName)
}

// InPod runs fn on a thread inside the pod's network namespace: sockets
// fn opens are the pod's (dial from the pod, listen on its IP). fn must
// not start goroutines that open sockets.
func (c *NetCluster) InPod(pod *corev1.Pod, fn func() error) error {
	ns, err := c.PodNetns(pod)
	if err != nil {
		return err
	}
	return nettools.Do(ns, fn)
}

// InNode runs fn inside node i's network namespace.
func (c *NetCluster) InNode(i int, fn func() error) error {
	return nettools.Do(c.NodeNetns(i), fn)
}

// Kubectl runs kubectl with the admin kubeconfig and returns its combined
// output.
func (c *NetCluster) Kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.Master.Kubeconfig(), "--server", c.Master.URL()}, args...)...).CombinedOutput()
	return string(out), err
}

// Exec runs a command in the pod's first container (kubectl exec) and
// returns its combined output.
func (c *NetCluster) Exec(pod *corev1.Pod, cmd ...string) (string, error) {
	return c.Kubectl(append([]string{"exec", "-n", pod.Namespace, pod.Name, "--"}, cmd...)...)
}

func (c *NetCluster) copyImages(dir string, archives []string) {
	c.t.Helper()
	if len(archives) == 0 {
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.t.Fatalf("image dir: %v", err)
	}
	for _, a := range archives {
		dst := filepath.Join(dir, filepath.Base(a))
		if err := os.Link(a, dst); err != nil {
			b, err := os.ReadFile(a)
			if err == nil {
				err = os.WriteFile(dst, b, 0o600)
			}
			if err != nil {
				c.t.Fatalf("copy image %s: %v", a, err)
			}
		}
	}
}

// cleanup deletes every pod while the nodes run, then stops them.
func (c *NetCluster) cleanup() {
	if !c.Master.Running() {
		// Pods are deleted through the API: bring it back (a test may
		// have stopped node 0).
		c.Master.Start()
		c.Master.WaitReady(60 * time.Second)
	}
	if c.Master.Running() {
		for i, a := range c.Agents {
			if !a.Running() {
				c.StartNode(i + 1)
			}
		}
		ctx := context.Background()
		zero := int64(0)
		if nss, err := c.CS.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
			for _, ns := range nss.Items {
				_ = c.CS.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
			}
		}
		if err := Poll(90*time.Second, func() error {
			pods, err := c.CS.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			if len(pods.Items) > 0 {
				var names []string
				for _, p := range pods.Items {
					names = append(names, p.Namespace+"/"+p.Name)
				}
				return fmt.Errorf("pods left: %s", strings.Join(names, " "))
			}
			return nil
		}); err != nil {
			c.t.Logf("net cluster cleanup: %v", err)
		}
		// The pods' sandboxes go after the API objects: wait for the
		// runtimes to drop them.
		for i := 0; i < c.Nodes(); i++ {
			dir := filepath.Join(c.dataDir(i), "agent", "netns")
			if err := Poll(30*time.Second, func() error {
				if ents, _ := os.ReadDir(dir); len(ents) > 0 {
					return fmt.Errorf("node %d: sandbox %s left", i, ents[0].Name())
				}
				return nil
			}); err != nil {
				c.t.Logf("net cluster cleanup: %v", err)
			}
			// And the containers' state directories, which the runtime
			// removes after the sandbox: removing the data directory
			// while it still writes there fails the test's cleanup.
			cdir := filepath.Join(c.dataDir(i), "agent", "containers")
			if err := Poll(10*time.Second, func() error {
				if ents, _ := os.ReadDir(cdir); len(ents) > 0 {
					return fmt.Errorf("node %d: container %s left", i, ents[0].Name())
				}
				return nil
			}); err != nil {
				c.t.Logf("net cluster cleanup: %v", err)
			}
		}
	}
	for _, a := range c.Agents {
		a.Stop()
	}
	c.Master.Stop()
}
