package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// processesWhere lists the PIDs whose NUL-separated command line
// satisfies match.
func processesWhere(match func(cmdline []byte) bool) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && match(b) {
			out = append(out, pid)
		}
	}
	return out
}

// podProcesses lists the PIDs in the cgroups of pod uid.
func podProcesses(uid string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if err == nil && strings.Contains(string(b), "pod"+uid) {
			out = append(out, pid)
		}
	}
	return out
}

// rebootNode kills what a reboot ends on a test host: the agent
// (SIGKILL), the container shims of its data dir and every process of
// the given pods.
func rebootNode(t *testing.T, a *testutil.Agent, uids ...string) {
	t.Helper()
	a.Kill()
	shims := processesWhere(func(c []byte) bool {
		args := bytes.Split(c, []byte{0})
		return len(args) > 2 && string(args[0]) == "skiff-shim" && strings.HasPrefix(string(args[2]), a.DataDir+"/")
	})
	var pids []int
	pids = append(pids, shims...)
	for _, uid := range uids {
		pids = append(pids, podProcesses(uid)...)
	}
	if len(shims) == 0 {
		t.Fatalf("no container shim of %s found to kill", a.DataDir)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Fatalf("kill %d: %v", pid, err)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "the node's processes gone", func() error {
		for _, uid := range uids {
			if n := len(podProcesses(uid)); n > 0 {
				return fmt.Errorf("%d processes of pod %s", n, uid)
			}
		}
		return nil
	})
}

const staticBusybox = `apiVersion: v1
kind: Pod
metadata:
  name: static-web
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: ` + busyboxRef + `
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exec sleep 3601"]
`

// TestNodeAutonomyAfterReboot: real containers on a test host. The
// master is stopped; the node "reboots" (agent SIGKILLed, shims and
// container processes killed) and its agent starts again with no master:
// its pods run again within 30s from the checkpoint, and a static pod
// dropped into the manifest directory runs. The master back, the API
// lists the same pods Running, each runs once, and the static pod has its
// mirror; removing the manifest stops the pod and removes the mirror.
func TestNodeAutonomyAfterReboot(t *testing.T) {
	n := startRealNode(t)
	manifest := filepath.Join(n.agent.DataDir, "agent", "manifests", "static-web.yaml")
	t.Cleanup(func() {
		// startRealNode's clean-up needs the master, and stops only the
		// pods of the API.
		if err := os.Remove(manifest); err != nil && !os.IsNotExist(err) {
			t.Errorf("remove the static pod manifest: %v", err)
		}
		if !n.master.Running() {
			n.master.Start()
			n.master.WaitReady(60 * time.Second)
		}
	})
	ctx := context.Background()
	uids := map[string]string{}
	for _, name := range []string{"auto-a", "auto-b"} {
		p := bbPod(name, corev1.RestartPolicyAlways, "exec sleep 3600")
		// A service account token volume needs a master after a reboot
		// (docs/agent.md, what degrades).
		no := false
		p.Spec.AutomountServiceAccountToken = &no
		n.create(p)
		running := n.waitPod(name, "Running", phase(corev1.PodRunning))
		uids[name] = string(running.UID)
	}
	testutil.WaitFor(t, 30*time.Second, "the checkpoint of the two pods", func() error {
		b, err := os.ReadFile(filepath.Join(n.agent.DataDir, "agent", "checkpoint", "pods.json"))
		if err != nil {
			return err
		}
		for _, uid := range uids {
			if !bytes.Contains(b, []byte(uid)) {
				return fmt.Errorf("pod %s not in the checkpoint", uid)
			}
		}
		return nil
	})
	before := map[string]int{}
	for name, uid := range uids {
		before[name] = len(podProcesses(uid))
		if before[name] == 0 {
			t.Fatalf("no process of %s found", name)
		}
	}

	n.master.Stop()
	rebootNode(t, n.agent, uids["auto-a"], uids["auto-b"])
	n.agent.Start()
	start := time.Now()
	testutil.WaitFor(t, 30*time.Second, "the pods running again without a master", func() error {
		for name, uid := range uids {
			if got := len(podProcesses(uid)); got != before[name] {
				return fmt.Errorf("%s: %d processes, want %d", name, got, before[name])
			}
		}
		return nil
	})
	t.Logf("pods running again %s after the agent restarted without a master", time.Since(start).Round(100*time.Millisecond))

	if err := os.MkdirAll(filepath.Dir(manifest), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, []byte(staticBusybox), 0o644); err != nil {
		t.Fatal(err)
	}
	isStatic := func(c []byte) bool { return bytes.Equal(c, []byte("sleep\x003601\x00")) }
	testutil.WaitFor(t, 60*time.Second, "the static pod running without a master", func() error {
		if got := len(processesWhere(isStatic)); got != 1 {
			return fmt.Errorf("%d static pod processes\n%s", got, n.agent.LogTail(10))
		}
		return nil
	})

	n.master.Start()
	n.master.WaitReady(60 * time.Second)
	waitNodeReady(t, n.cs, "real-1")
	for name := range uids {
		n.waitPod(name, "Running after the master came back", phase(corev1.PodRunning))
	}
	mirror := n.waitPod("static-web-real-1", "mirror pod Running", phase(corev1.PodRunning))
	if mirror.Annotations["kubernetes.io/config.mirror"] == "" || mirror.Annotations["kubernetes.io/config.source"] != "file" {
		t.Fatalf("mirror pod annotations %v", mirror.Annotations)
	}
	// The API's list and the node agree, and nothing runs twice.
	list, err := n.cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 3 {
		t.Fatalf("%d pods in the API, want auto-a, auto-b and the mirror", len(list.Items))
	}
	// A few relist and housekeeping periods: the counts hold.
	for range 3 {
		for name, uid := range uids {
			if got := len(podProcesses(uid)); got != before[name] {
				t.Fatalf("%s: %d processes after the master came back, want %d", name, got, before[name])
			}
		}
		if got := len(processesWhere(isStatic)); got != 1 {
			t.Fatalf("%d static pod processes after the master came back", got)
		}
		time.Sleep(2 * time.Second) // pacing of an assertion that must hold throughout
	}

	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, "the static pod stopped and its mirror removed", func() error {
		if got := len(processesWhere(isStatic)); got != 0 {
			return fmt.Errorf("%d static pod processes", got)
		}
		if _, err := n.cs.CoreV1().Pods("default").Get(ctx, "static-web-real-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("mirror pod: %v", err)
		}
		return nil
	})
}

// TestAgentFailsOverWhenCutOff: three masters and an agent on hosts of a
// test network; the link between the agent and the master it joined
// through is cut (packets dropped: no FIN, no RST). The agent's busy
// connection to that master is dropped (TCP_USER_TIMEOUT) and it renews
// its Lease through another master within 30s; a pod scheduled to it
// runs.
func TestAgentFailsOverWhenCutOff(t *testing.T) {
	if ok, why := testutil.HaveNetns(); !ok {
		t.Skip(why)
	}
	tn := testutil.NewTestNet(t, 4)
	hosts := tn.Hosts()
	m1 := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1", IP: hosts[0].IP, Netns: hosts[0].Netns})
	m1.Start()
	m1.WaitReady(30 * time.Second)
	var others []*testutil.Master
	for i, name := range []string{"m2", "m3"} {
		m := testutil.NewMaster(t, testutil.MasterOptions{Name: name, IP: hosts[i+1].IP, Netns: hosts[i+1].Netns, Join: m1.URL(), Token: m1.Token()})
		m.Start()
		m.WaitReady(60 * time.Second)
		others = append(others, m)
	}
	ag := testutil.NewAgent(t, testutil.AgentOptions{Name: "edge-cut", Server: m1.URL(), Token: m1.Token(), IP: hosts[3].IP, Netns: hosts[3].Netns})
	ag.Start()
	cs := others[0].Clientset()
	waitNodeReady(t, cs, "edge-cut")
	ctx := context.Background()
	testutil.WaitFor(t, 60*time.Second, "the agent to know the three masters", func() error {
		ms, err := readMastersFile(ag)
		if err != nil {
			return err
		}
		if len(ms) < 3 {
			return fmt.Errorf("masters %v", ms)
		}
		return nil
	})
	testutil.WaitFor(t, 30*time.Second, "the node's Lease", func() error {
		_, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, "edge-cut", metav1.GetOptions{})
		return err
	})

	if err := tn.Cut(hosts[3], hosts[0]); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	testutil.WaitFor(t, 30*time.Second, "the Lease renewed through another master", func() error {
		l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, "edge-cut", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime == nil || !l.Spec.RenewTime.Time.After(cut.Add(time.Second)) {
			return fmt.Errorf("renewed at %v, cut at %v", l.Spec.RenewTime, cut)
		}
		return nil
	})
	t.Logf("Lease renewed through another master %s after the cut", time.Since(cut).Round(100*time.Millisecond))
	waitNodeReady(t, cs, "edge-cut")
	pod := fakePod("after-cut", "", corev1.RestartPolicyAlways)
	pod.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "edge-cut"}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	waitPodPhase(t, cs, "default", "after-cut", corev1.PodRunning)
}
