package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestSupervisorRestartsAgent: the agent's worker process, killed with
// SIGKILL and then hung with SIGSTOP, is restarted by its supervisor within
// 10s; the pod's container processes are the same ones throughout, the
// container is not restarted, each restart is a Node event, and the health
// socket counts the restarts. A second agent on the same data dir is still
// refused. Before the supervisor there was no parent to restart anything:
// the killed agent stayed dead.
func TestSupervisorRestartsAgent(t *testing.T) {
	n := startRealNode(t)
	ctx := context.Background()
	n.create(bbPod("steady", corev1.RestartPolicyAlways, "sleep 3600"))
	before := n.waitPod("steady", "running", phase(corev1.PodRunning))
	uid := string(before.UID)
	pids := podPIDs(uid)
	if len(pids) == 0 {
		t.Fatal("no processes in the pod's cgroup")
	}
	sock := filepath.Join(n.agent.DataDir, "skiff.sock")

	waitReady := func(what string) {
		testutil.WaitFor(t, 30*time.Second, what, func() error {
			code, _, err := unixGet(sock, "/readyz")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("readyz: %d %v", code, err)
			}
			return nil
		})
	}
	waitReady("the agent is ready")
	for i, c := range []struct {
		name   string
		sig    syscall.Signal
		reason string
	}{
		{"kill -9", syscall.SIGKILL, "killed by signal KILL"},
		{"SIGSTOP (a hang)", syscall.SIGSTOP, "hung: no answer to"},
	} {
		parent := n.agent.Pid()
		child := childOf(t, parent)
		if child == 0 {
			t.Fatalf("no child of the agent's process %d: %s", parent, n.agent.LogTail(10))
		}
		if err := syscall.Kill(child, c.sig); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		testutil.WaitFor(t, 10*time.Second, c.name+": a new child, ready", func() error {
			if !n.agent.Running() {
				return fmt.Errorf("the supervisor exited: %s", n.agent.LogTail(10))
			}
			now := childOf(t, parent)
			if now == child || now == 0 {
				return fmt.Errorf("child still %d", now)
			}
			code, _, err := unixGet(sock, "/readyz")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("readyz: %d %v", code, err)
			}
			return nil
		})
		t.Logf("%s: restarted and ready after %s", c.name, time.Since(start).Round(100*time.Millisecond))
		if got := podPIDs(uid); !slices.Equal(got, pids) {
			t.Fatalf("%s: the pod's processes %v, were %v", c.name, got, pids)
		}
		testutil.WaitFor(t, 30*time.Second, c.name+": the Node event", func() error {
			evs, err := n.cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			want := fmt.Sprintf("(restart %d since", i+1)
			for _, e := range evs.Items {
				if e.InvolvedObject.Kind == "Node" && e.InvolvedObject.Name == "real-1" && e.Reason == "SupervisorRestart" &&
					strings.Contains(e.Message, want) && strings.Contains(e.Message, c.reason) {
					return nil
				}
			}
			return fmt.Errorf("no SupervisorRestart event with %q and %q among %d events", want, c.reason, len(evs.Items))
		})
	}
	// The node keeps its pod and the container was never restarted.
	time.Sleep(3 * time.Second) // a few syncs of the restarted kubelet
	after := n.waitPod("steady", "still running", phase(corev1.PodRunning))
	if a, b := after.Status.ContainerStatuses[0], before.Status.ContainerStatuses[0]; a.ContainerID != b.ContainerID || a.RestartCount != 0 {
		t.Errorf("container %s (restarts %d), was %s", a.ContainerID, a.RestartCount, b.ContainerID)
	}
	if got := podPIDs(uid); !slices.Equal(got, pids) {
		t.Errorf("the pod's processes %v, were %v", got, pids)
	}
	if _, body, err := unixGet(sock, "/metrics"); err != nil || !strings.Contains(body, "skiff_supervisor_restarts_total 2") {
		t.Errorf("metrics: %v\n%s", err, body)
	}
	// The data dir stays locked across restarts.
	out, err := exec.Command(testutil.Binary(t), "agent", "--server", "https://127.0.0.1:1", "--token", "x",
		"--runtime", "fake", "--data-dir", n.agent.DataDir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("in use by another skiff process (pid %d agent)", n.agent.Pid())) {
		t.Errorf("a second agent on the data dir: %v: %s", err, out)
	}
}

// podPIDs lists the processes in the pod's cgroups, sorted.
func podPIDs(uid string) []int {
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cgroup"))
		if err == nil && strings.Contains(string(b), "pod"+uid) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// childOf is the skiff process whose parent is pid (the supervised
// child), or 0.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[1] == strconv.Itoa(pid) && f[0] != "Z" {
			n, _ := strconv.Atoi(p.Name())
			return n
		}
	}
	return 0
}

// unixGet asks the supervisor's health socket for path.
func unixGet(sock, path string) (int, string, error) {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	resp, err := hc.Get("http://skiff" + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestSupervisorRestartsServer: a master with its embedded agent is the
// supervised child as a whole; killed with SIGKILL it is restarted on its
// data dir (one process at a time opens the Raft log), serves the API
// again, its node writes the restart's Node event, and SIGTERM still
// stops it cleanly. Before, the killed master stayed dead.
func TestSupervisorRestartsServer(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "sup", Agent: true, Args: []string{"--runtime", "fake"}})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	waitNodeReady(t, cs, "sup")
	parent := m.Pid()
	child := childOf(t, parent)
	if child == 0 {
		t.Fatalf("no child of the master's process %d: %s", parent, m.LogTail(10))
	}
	// Ready (the supervisor would treat an earlier death as a start-up failure).
	sock := filepath.Join(m.DataDir, "skiff.sock")
	testutil.WaitFor(t, 30*time.Second, "the master is ready", func() error {
		code, _, err := unixGet(sock, "/readyz")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("readyz: %d %v", code, err)
		}
		return nil
	})
	if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testutil.WaitFor(t, 30*time.Second, "the master back", func() error {
		if now := childOf(t, parent); now == child || now == 0 {
			return fmt.Errorf("child %d", now)
		}
		_, err := cs.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{})
		return err
	})
	t.Logf("the master answers again %s after its kill", time.Since(start).Round(100*time.Millisecond))
	testutil.WaitFor(t, 30*time.Second, "the Node event", func() error {
		evs, err := cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "SupervisorRestart" && e.InvolvedObject.Kind == "Node" && e.InvolvedObject.Name == "sup" && strings.Contains(e.Message, "killed by signal KILL") {
				return nil
			}
		}
		return fmt.Errorf("%d SupervisorRestart events, none for node sup", len(evs.Items))
	})
	m.Stop()
	if log, err := os.ReadFile(m.LogPath()); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(string(log), `msg="child stopped" component=supervisor signal=terminated exit="exited with status 0"`) {
		t.Errorf("the master's child did not exit cleanly on SIGTERM:\n%s", m.LogTail(20))
	}
}

// TestSupervisorNotifiesSystemd: under a Type=notify unit with
// WatchdogSec (NOTIFY_SOCKET and WATCHDOG_USEC set), the supervised server
// sends READY=1 once its child is ready, then WATCHDOG=1 pings, from the
// parent (the unit's main process) only. Before, nothing was sent.
func TestSupervisorNotifiesSystemd(t *testing.T) {
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// The sender's pid comes with each datagram.
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	t.Setenv("NOTIFY_SOCKET", sockPath)
	t.Setenv("WATCHDOG_USEC", "3000000")
	// Supervised, then as one process (--supervise=false), which
	// notifies by itself.
	for _, args := range [][]string{nil, {"--supervise=false"}} {
		m := testutil.NewMaster(t, testutil.MasterOptions{Name: "notify", Args: args})
		m.Start()
		readNotifications(t, conn, m)
		m.Stop()
		// Drop the pings sent since.
		buf := make([]byte, 4096)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := conn.Read(buf); err != nil {
				break
			}
		}
	}
}

func readNotifications(t *testing.T, conn *net.UnixConn, m *testutil.Master) {
	t.Helper()
	got := map[string]bool{}
	buf := make([]byte, 4096)
	oob := make([]byte, 1024)
	deadline := time.Now().Add(30 * time.Second)
	for !(got["READY=1"] && got["WATCHDOG=1"]) {
		if err := conn.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatalf("notifications so far %v: %v\n%s", got, err, m.LogTail(10))
		}
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) == 0 {
			t.Fatalf("no credentials with %q: %v", buf[:n], err)
		}
		cred, err := syscall.ParseUnixCredentials(&msgs[0])
		if err != nil {
			t.Fatal(err)
		}
		if int(cred.Pid) != m.Pid() {
			t.Errorf("%q sent by pid %d, not by the supervisor (pid %d)", buf[:n], cred.Pid, m.Pid())
		}
		for _, l := range strings.Split(string(buf[:n]), "\n") {
			if l != "" {
				got[l] = true
			}
		}
		if got["WATCHDOG=1"] && !got["READY=1"] {
			t.Fatalf("a watchdog ping before READY=1: %v", got)
		}
	}
	m.WaitReady(10 * time.Second)
}
