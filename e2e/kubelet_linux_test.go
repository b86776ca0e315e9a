package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
	rtestutil "github.com/skiff-io/skiff/runtime/testutil"
)

const busyboxRef = "skiff.test/busybox:1"

// realNode is a master and an agent running real containers, each in a
// network namespace of a test network (pod addresses and the pod bridge
// stay inside the agent's namespace).
type realNode struct {
	t      *testing.T
	master *testutil.Master
	agent  *testutil.Agent
	cs     kubernetes.Interface
}

func needRealContainers(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("real containers need root: run `make test` as root")
	}
	if ok, why := testutil.HaveNetns(); !ok {
		t.Skip(why)
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("nsenter (util-linux) is not installed")
	}
	rtestutil.Busybox(t)
}

// startRealNode starts the master and the agent; extraArgs go to the
// agent.
func startRealNode(t *testing.T, extraArgs ...string) *realNode {
	t.Helper()
	return startRealNodeWith(t, nil, extraArgs...)
}

// startRealNodeWith is startRealNode with flags for the master too.
func startRealNodeWith(t *testing.T, masterArgs []string, extraArgs ...string) *realNode {
	t.Helper()
	needRealContainers(t)
	tn := testutil.NewTestNet(t, 2)
	hosts := tn.Hosts()
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1", IP: hosts[0].IP, Netns: hosts[0].Netns, Args: masterArgs})
	m.Start()
	m.WaitReady(30 * time.Second)
	a := testutil.NewAgent(t, testutil.AgentOptions{Name: "real-1", Server: m.URL(), Token: m.AgentToken(), Runtime: "libcontainer",
		IP: hosts[1].IP, Netns: hosts[1].Netns, Args: append([]string{"--restart-backoff", "1s"}, extraArgs...)})
	img, err := rtestutil.BusyboxImage(rtestutil.BusyboxPath, v1.Config{Cmd: []string{"sh"}},
		rtestutil.File{Path: "www", Dir: true}, rtestutil.File{Path: "www/index.html", Data: "hello from httpd\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(a.ImageDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := rtestutil.WriteDockerArchive(filepath.Join(a.ImageDir(), "busybox.tar"), busyboxRef, img); err != nil {
		t.Fatal(err)
	}
	a.Start()
	t.Cleanup(func() {
		// Leave nothing running: delete every pod while the agent runs
		// (started again if a test stopped it: containers outlive it).
		if !m.Running() {
			return
		}
		if !a.Running() {
			a.Start()
		}
		cs := m.Clientset()
		zero := int64(0)
		_ = cs.CoreV1().Pods("default").DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		_ = testutil.Poll(60*time.Second, func() error { return noPodLeft(a) })
		a.Stop()
	})
	cs := m.Clientset()
	waitNodeReady(t, cs, "real-1")
	return &realNode{t: t, master: m, agent: a, cs: cs}
}

func (n *realNode) kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", n.master.Kubeconfig()}, args...)...).CombinedOutput()
	return string(out), err
}

func bbPod(name string, policy corev1.RestartPolicy, script string) *corev1.Pod {
	grace := int64(2)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "real-1", RestartPolicy: policy, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "main", Image: busyboxRef, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sh", "-c", script},
			}}},
	}
}

func (n *realNode) create(p *corev1.Pod) {
	n.t.Helper()
	if _, err := n.cs.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		n.t.Fatalf("create %s: %v", p.Name, err)
	}
}

func (n *realNode) waitPod(name, what string, cond func(*corev1.Pod) error) *corev1.Pod {
	n.t.Helper()
	var last *corev1.Pod
	err := testutil.Poll(90*time.Second, func() error {
		p, err := n.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		last = p
		return cond(p)
	})
	if err != nil {
		n.t.Fatalf("pod %s: %s: %v\n--- agent log ---\n%s", name, what, err, n.agent.LogTail(30))
	}
	return last
}

func phase(ph corev1.PodPhase) func(*corev1.Pod) error {
	return func(p *corev1.Pod) error {
		if p.Status.Phase != ph {
			return fmt.Errorf("phase %q want %q, statuses %+v", p.Status.Phase, ph, p.Status.ContainerStatuses)
		}
		return nil
	}
}

func (n *realNode) deletePod(name string) {
	n.t.Helper()
	if err := n.cs.CoreV1().Pods("default").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		n.t.Fatal(err)
	}
	if err := testutil.Poll(60*time.Second, func() error {
		_, err := n.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	}); err != nil {
		n.t.Fatalf("delete %s: %v", name, err)
	}
}

// noPodLeft checks that no pod of the agent left a mount, a cgroup, a
// network namespace or a process behind.
func noPodLeft(a *testutil.Agent) error {
	data := a.DataDir
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], data+"/") {
			return fmt.Errorf("mount left: %s", f[4])
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(data, "agent", "netns")); len(ents) > 0 {
		return fmt.Errorf("network namespace left: %s", ents[0].Name())
	}
	if ents, _ := os.ReadDir(filepath.Join(data, "agent", "pods")); len(ents) > 0 {
		return fmt.Errorf("pod directory left: %s", ents[0].Name())
	}
	for _, root := range []string{"/sys/fs/cgroup/memory/skiff/kubepods", "/sys/fs/cgroup/pids/skiff/kubepods", "/sys/fs/cgroup/unified/skiff/kubepods", "/sys/fs/cgroup/skiff/kubepods"} {
		for _, qos := range []string{"besteffort", "burstable", "guaranteed"} {
			ents, _ := os.ReadDir(filepath.Join(root, qos))
			for _, e := range ents {
				if e.IsDir() && strings.HasPrefix(e.Name(), "pod") {
					if procs, _ := os.ReadFile(filepath.Join(root, qos, e.Name(), "cgroup.procs")); len(strings.TrimSpace(string(procs))) > 0 {
						return fmt.Errorf("processes left in cgroup %s/%s", qos, e.Name())
					}
				}
			}
		}
	}
	return nil
}

// podUIDProcesses counts processes whose cgroup names the pod's UID.
func podUIDProcesses(uid string) int {
	n := 0
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cgroup"))
		if err == nil && strings.Contains(string(b), "pod"+uid) {
			n++
		}
	}
	return n
}

func TestRealContainers(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not installed")
	}
	n := startRealNode(t)
	ctx := context.Background()

	t.Run("RunToCompletionAndLogs", func(t *testing.T) {
		n.create(bbPod("hello", corev1.RestartPolicyNever, "echo hello from busybox; echo to stderr >&2"))
		p := n.waitPod("hello", "succeeded", phase(corev1.PodSucceeded))
		if st := p.Status.ContainerStatuses[0].State.Terminated; st == nil || st.ExitCode != 0 || st.Reason != "Completed" {
			t.Errorf("status %+v", p.Status.ContainerStatuses[0])
		}
		out, err := n.kubectl("logs", "hello")
		if err != nil || !strings.Contains(out, "hello from busybox") || !strings.Contains(out, "to stderr") {
			t.Errorf("kubectl logs: %v: %q", err, out)
		}
	})

	t.Run("ExitCode", func(t *testing.T) {
		n.create(bbPod("fails", corev1.RestartPolicyNever, "exit 3"))
		p := n.waitPod("fails", "failed", phase(corev1.PodFailed))
		if st := p.Status.ContainerStatuses[0].State.Terminated; st == nil || st.ExitCode != 3 || st.Reason != "Error" {
			t.Errorf("status %+v", p.Status.ContainerStatuses[0])
		}
	})

	t.Run("RestartBackoff", func(t *testing.T) {
		n.create(bbPod("crash", corev1.RestartPolicyAlways, "echo run; exit 1"))
		seen := false
		n.waitPod("crash", "restarted twice in CrashLoopBackOff", func(p *corev1.Pod) error {
			cs := p.Status.ContainerStatuses
			if len(cs) == 0 {
				return fmt.Errorf("no status")
			}
			if w := cs[0].State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
				seen = true
			}
			if cs[0].RestartCount < 2 || !seen {
				return fmt.Errorf("restarts %d, back-off seen %v", cs[0].RestartCount, seen)
			}
			return nil
		})
		out, err := n.kubectl("logs", "crash", "--previous")
		if err != nil || !strings.Contains(out, "run") {
			t.Errorf("kubectl logs --previous: %v: %q", err, out)
		}
	})

	t.Run("ProbesAndExec", func(t *testing.T) {
		p := bbPod("probed", corev1.RestartPolicyAlways, "sleep 3600")
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}}, PeriodSeconds: 1, FailureThreshold: 1}
		p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "! test -f /tmp/dead"}}}, PeriodSeconds: 1, FailureThreshold: 2}
		n.create(p)
		n.waitPod("probed", "running, not ready", func(p *corev1.Pod) error {
			if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].Ready {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		if out, err := n.kubectl("exec", "probed", "--", "touch", "/tmp/ready"); err != nil {
			t.Fatalf("kubectl exec: %v: %s", err, out)
		}
		n.waitPod("probed", "ready", func(p *corev1.Pod) error {
			if !p.Status.ContainerStatuses[0].Ready {
				return fmt.Errorf("not ready")
			}
			return nil
		})
		_, err := n.kubectl("exec", "probed", "--", "sh", "-c", "exit 7")
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
			t.Errorf("kubectl exec exit code: %v", err)
		}
		if out, err := n.kubectl("exec", "probed", "--", "touch", "/tmp/dead"); err != nil {
			t.Fatalf("kubectl exec: %v: %s", err, out)
		}
		n.waitPod("probed", "restarted by the liveness probe", func(p *corev1.Pod) error {
			if p.Status.ContainerStatuses[0].RestartCount < 1 {
				return fmt.Errorf("no restart yet")
			}
			return nil
		})
	})

	t.Run("OOMKilled", func(t *testing.T) {
		p := bbPod("oom", corev1.RestartPolicyNever, "head -c 200m /dev/zero | tail")
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("24Mi")}
		n.create(p)
		p = n.waitPod("oom", "OOMKilled", func(p *corev1.Pod) error {
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Terminated == nil {
				return fmt.Errorf("not terminated")
			}
			return nil
		})
		if st := p.Status.ContainerStatuses[0].State.Terminated; st.Reason != "OOMKilled" {
			t.Errorf("terminated %+v, want reason OOMKilled", st)
		}
	})

	t.Run("Volumes", func(t *testing.T) {
		if _, err := n.cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "web-config"}, Data: map[string]string{"greeting": "hi from a configmap"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		size := resource.MustParse("8Mi")
		p := bbPod("vols", corev1.RestartPolicyAlways, "cat /shared/from-init /config/greeting; grep ' /mem ' /proc/mounts; sleep 3600")
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: busyboxRef, Command: []string{"sh", "-c", "echo written by init > /shared/from-init"},
			VolumeMounts: []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
			{Name: "shared", MountPath: "/shared"}, {Name: "config", MountPath: "/config"}, {Name: "mem", MountPath: "/mem"},
		}
		p.Spec.Volumes = []corev1.Volume{
			{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}},
			{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &size}}},
		}
		n.create(p)
		n.waitPod("vols", "running", phase(corev1.PodRunning))
		var out string
		if err := testutil.Poll(30*time.Second, func() error {
			var err error
			out, err = n.kubectl("logs", "vols")
			if err != nil || !strings.Contains(out, "tmpfs") {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}); err != nil {
			t.Fatalf("logs: %v", err)
		}
		for _, want := range []string{"written by init", "hi from a configmap", "/mem tmpfs"} {
			if !strings.Contains(out, want) {
				t.Errorf("logs %q lack %q", out, want)
			}
		}
		if _, err := n.kubectl("exec", "vols", "--", "touch", "/config/x"); err == nil {
			t.Errorf("configMap volume is writable")
		}
	})

	t.Run("PortForwardAndPodToPod", func(t *testing.T) {
		web := bbPod("web", corev1.RestartPolicyAlways, "httpd -f -p 8080 -h /www")
		n.create(web)
		wp := n.waitPod("web", "running", phase(corev1.PodRunning))
		n.create(bbPod("client", corev1.RestartPolicyAlways, "sleep 3600"))
		n.waitPod("client", "running", phase(corev1.PodRunning))
		var out string
		if err := testutil.Poll(20*time.Second, func() error {
			var err error
			out, err = n.kubectl("exec", "client", "--", "wget", "-qO-", "http://"+wp.Status.PodIP+":8080/")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}); err != nil || !strings.Contains(out, "hello from httpd") {
			t.Errorf("pod to pod by IP: %v %q", err, out)
		}
		// port-forward binds in the test's namespace, on loopback.
		pf := exec.Command("kubectl", "--kubeconfig", n.master.Kubeconfig(), "port-forward", "pod/web", "--address", "127.0.0.1", ":8080")
		stdout, _ := pf.StdoutPipe()
		pf.Stderr = pf.Stdout
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		var local string
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "Forwarding from %s ->", &local); err != nil {
			t.Fatalf("port-forward said %q", line)
		}
		resp, err := http.Get("http://" + local + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "hello from httpd") {
			t.Errorf("port-forward body %q", body)
		}
	})

	t.Run("AgentKillAndRestart", func(t *testing.T) {
		n.create(bbPod("survivor", corev1.RestartPolicyAlways, "sleep 3600"))
		n.create(bbPod("doomed", corev1.RestartPolicyAlways, "sleep 3600"))
		before := n.waitPod("survivor", "running", phase(corev1.PodRunning))
		doomed := n.waitPod("doomed", "running", phase(corev1.PodRunning))
		id := before.Status.ContainerStatuses[0].ContainerID
		procs := podUIDProcesses(string(before.UID))
		n.agent.Kill()
		// Containers outlive the agent.
		if got := podUIDProcesses(string(before.UID)); got != procs || got == 0 {
			t.Fatalf("processes of the pod: %d before kill, %d after", procs, got)
		}
		// Deleted while the agent is down (force: nobody confirms).
		zero := int64(0)
		if err := n.cs.CoreV1().Pods("default").Delete(ctx, "doomed", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
		n.agent.Start()
		if err := testutil.Poll(30*time.Second, func() error {
			if k := podUIDProcesses(string(doomed.UID)); k != 0 {
				return fmt.Errorf("%d processes of the pod deleted while the agent was down", k)
			}
			if _, err := os.Stat(filepath.Join(n.agent.DataDir, "agent", "pods", string(doomed.UID))); !os.IsNotExist(err) {
				return fmt.Errorf("its pod directory is still there")
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
		time.Sleep(3 * time.Second) // a few syncs: nothing may be started twice
		after := n.waitPod("survivor", "still running", phase(corev1.PodRunning))
		cs := after.Status.ContainerStatuses[0]
		if cs.ContainerID != id || cs.RestartCount != 0 {
			t.Errorf("container %s (restarts %d) after the agent restart, was %s", cs.ContainerID, cs.RestartCount, id)
		}
		if got := podUIDProcesses(string(before.UID)); got != procs {
			t.Errorf("processes of the pod: %d, want %d (a duplicate was started?)", got, procs)
		}
	})

	t.Run("DeletionLeavesNothing", func(t *testing.T) {
		pods, err := n.cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			n.deletePod(p.Name)
		}
		if err := testutil.Poll(30*time.Second, func() error { return noPodLeft(n.agent) }); err != nil {
			t.Error(err)
		}
		for _, p := range pods.Items {
			if k := podUIDProcesses(string(p.UID)); k != 0 {
				t.Errorf("%d processes of pod %s left", k, p.Name)
			}
		}
	})
}
