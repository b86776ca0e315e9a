package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// Masters lost, nodes cut off (docs/agent.md): an agent knows every
// master and fails over among them.

// readMastersFile returns the masters an agent keeps on disk.
func readMastersFile(a *testutil.Agent) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(a.DataDir, "agent", "masters.json"))
	if err != nil {
		return nil, err
	}
	var f struct {
		Version int      `json:"version"`
		Masters []string `json:"masters"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("masters file version %d", f.Version)
	}
	return f.Masters, nil
}

// TestAgentFailsOverToAnotherMaster: three masters, one agent that joined
// through the first. The first is killed (SIGKILL): the node's Lease keeps
// being renewed through another master, the node stays Ready, and a new
// pod scheduled to it starts. Then the agent is restarted, its --server
// master still dead: it finds another from the masters it kept on disk.
func TestAgentFailsOverToAnotherMaster(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	a := c.Masters[0]
	ag := testutil.NewAgent(t, testutil.AgentOptions{Name: "edge-fo", Server: a.URL(), Token: a.Token()})
	ag.Start()
	cs := c.Masters[1].Clientset()
	waitNodeReady(t, cs, "edge-fo")
	testutil.WaitFor(t, 30*time.Second, "the agent to know the three masters", func() error {
		ms, err := readMastersFile(ag)
		if err != nil {
			return err
		}
		if len(ms) < 3 {
			return fmt.Errorf("masters %v", ms)
		}
		return nil
	})

	ctx := context.Background()
	testutil.WaitFor(t, 30*time.Second, "the node's Lease", func() error {
		_, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, "edge-fo", metav1.GetOptions{})
		return err
	})
	a.Kill()
	killed := time.Now()
	// The Lease (4s) is renewed after the kill, more than once.
	testutil.WaitFor(t, 30*time.Second, "the Lease renewed through another master", func() error {
		l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, "edge-fo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime == nil || l.Spec.RenewTime.Time.Before(killed.Add(5*time.Second)) {
			return fmt.Errorf("renewed at %v, killed at %v", l.Spec.RenewTime, killed)
		}
		return nil
	})
	// The node never turned NotReady meanwhile, nor does it for 3 Lease
	// durations more.
	until := time.Now().Add(12 * time.Second)
	for time.Now().Before(until) {
		n, err := cs.CoreV1().Nodes().Get(ctx, "edge-fo", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get node: %v", err)
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status != corev1.ConditionTrue {
				t.Fatalf("node %s after its join master was killed: %s %s\nagent log:\n%s", cond.Status, cond.Reason, cond.Message, ag.LogTail(30))
			}
		}
		time.Sleep(500 * time.Millisecond) // pacing of an assertion that must hold throughout, not a wait
	}
	pod := fakePod("after-failover", "", corev1.RestartPolicyAlways)
	pod.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "edge-fo"}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	waitPodPhase(t, cs, "default", "after-failover", corev1.PodRunning)

	// A restarted agent whose --server master is gone finds another.
	ag.Kill()
	ag.Start()
	restarted := time.Now()
	testutil.WaitFor(t, 30*time.Second, "the Lease renewed by the restarted agent", func() error {
		l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, "edge-fo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime == nil || !l.Spec.RenewTime.Time.After(restarted.Add(time.Second)) {
			return fmt.Errorf("renewed at %v, restarted at %v", l.Spec.RenewTime, restarted)
		}
		return nil
	})
	waitNodeReady(t, cs, "edge-fo")
}
