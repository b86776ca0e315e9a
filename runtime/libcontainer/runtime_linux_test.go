package libcontainer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	utilexec "k8s.io/utils/exec"
)

func readLog(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRunToCompletionWithLogsAndExitCode(t *testing.T) {
	n := newNode(t)
	sb, cfg := n.runPod("complete")
	cc := ctrConfig("job", 0, "sh", "-c", `echo "out $(hostname) $GREETING $(id -u):$(id -g) $(pwd)"; echo err >&2; exit 3`)
	cc.Envs = []*runtimeapi.KeyValue{{Key: "GREETING", Value: []byte("hi")}}
	cc.WorkingDir = "/work/dir"
	cc.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
	id := n.start(sb, cfg, cc)
	st := n.waitExited(id)
	if st.ExitCode != 3 || st.Reason != "Error" {
		t.Errorf("exit code %d reason %q, want 3 Error", st.ExitCode, st.Reason)
	}
	if st.StartedAt == 0 || st.FinishedAt < st.StartedAt {
		t.Errorf("times: started %d finished %d", st.StartedAt, st.FinishedAt)
	}
	logs := readLog(t, st.LogPath)
	if st.LogPath != filepath.Join(n.dataDir, "pods", "default_complete_"+cfg.Metadata.Uid, "job", "0.log") {
		t.Errorf("log path %s", st.LogPath)
	}
	for _, want := range []string{" stdout F out complete hi 1000:1000 /work/dir\n", " stderr F err\n"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	// Each line starts with an RFC 3339 timestamp.
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		ts, _, _ := strings.Cut(line, " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("log line without timestamp: %q", line)
		}
	}

	// SIGHUP, SIGINT, SIGPIPE and SIGTERM are not ignored in the container
	// (the shim catches them; an ignored one would leak through execve).
	sigs := n.start(sb, cfg, ctrConfig("sigs", 0, "grep", "SigIgn", "/proc/self/status"))
	line := readLog(t, n.waitExited(sigs).LogPath)
	_, hexMask, _ := strings.Cut(strings.TrimSpace(line), "SigIgn:\t")
	if mask, err := strconv.ParseUint(hexMask, 16, 64); err != nil || mask&(1<<0|1<<1|1<<12|1<<14) != 0 {
		t.Errorf("ignored signals in the container: %q %v", line, err)
	}

	ok := n.start(sb, cfg, ctrConfig("ok", 0, "true"))
	if st := n.waitExited(ok); st.ExitCode != 0 || st.Reason != "Completed" {
		t.Errorf("true: exit %d reason %q", st.ExitCode, st.Reason)
	}
	// The image's default command (sh) with no stdin exits at once.
	cc = ctrConfig("default", 0)
	if st := n.waitExited(n.start(sb, cfg, cc)); st.ExitCode != 0 {
		t.Errorf("image default command: exit %d %s", st.ExitCode, st.Message)
	}
}

func TestRestartContainer(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	sb, cfg := n.runPod("restart")
	first := n.start(sb, cfg, ctrConfig("app", 0, "sh", "-c", "trap '' TERM; echo attempt0; while true; do sleep 1; done"))
	waitFor(t, 10*time.Second, "first attempt running with its trap set", func() bool {
		b, _ := os.ReadFile(n.status(first).LogPath)
		return strings.Contains(string(b), "attempt0")
	})
	// The shell ignores SIGTERM: the stop escalates to SIGKILL.
	start := time.Now()
	if err := n.rt.StopContainer(ctx, first, 1); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 900*time.Millisecond || el > 10*time.Second {
		t.Errorf("stop took %v, want about the 1s grace period", el)
	}
	if st := n.status(first); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("after stop: %v exit %d", st.State, st.ExitCode)
	}
	second := n.start(sb, cfg, ctrConfig("app", 1, "sh", "-c", "echo attempt1; exec sleep 1000"))
	waitFor(t, 10*time.Second, "second attempt running", func() bool {
		return n.status(second).State == runtimeapi.ContainerState_CONTAINER_RUNNING
	})
	st := n.status(second)
	waitFor(t, 5*time.Second, "attempt1 log", func() bool {
		b, _ := os.ReadFile(st.LogPath)
		return strings.Contains(string(b), "attempt1")
	})
	if !strings.HasSuffix(st.LogPath, "app/1.log") {
		t.Errorf("second attempt logs to %s", st.LogPath)
	}
	// A graceful stop of a process that handles SIGTERM ends quickly.
	trap := n.start(sb, cfg, ctrConfig("trap", 0, "sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.05; done"))
	waitFor(t, 10*time.Second, "trap running", func() bool {
		b, _ := os.ReadFile(n.status(trap).LogPath)
		return strings.Contains(string(b), "ready")
	})
	if err := n.rt.StopContainer(ctx, trap, 30); err != nil {
		t.Fatal(err)
	}
	if st := n.status(trap); st.ExitCode != 0 {
		t.Errorf("trap exit %d", st.ExitCode)
	}
	list, err := n.rt.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: sb, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
	if err != nil || len(list) != 1 || list[0].Id != second {
		t.Errorf("running containers: %v %v", list, err)
	}
}

func TestMemoryLimitOOMKilled(t *testing.T) {
	n := newNode(t)
	sb, cfg := n.runPod("oom")
	cc := ctrConfig("hog", 0, "sh", "-c", "tail /dev/zero")
	cc.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 48 << 20, CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000}
	id := n.start(sb, cfg, cc)
	st := n.waitExited(id)
	if st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Fatalf("reason %q exit %d, want OOMKilled 137", st.Reason, st.ExitCode)
	}
}

func TestCgroupLimits(t *testing.T) {
	n := newNode(t)
	sb, cfg := n.runPod("limits")
	cc := ctrConfig("app", 0, "sleep", "1000")
	cc.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 256, CpuQuota: 20000, CpuPeriod: 100000}
	id := n.start(sb, cfg, cc)
	c, _ := n.rt.getContainer(id)
	for file, want := range map[string]string{
		"memory/memory.limit_in_bytes": strconv.Itoa(64 << 20),
		"cpu/cpu.shares":               "256",
		"cpu/cpu.cfs_quota_us":         "20000",
	} {
		ctrl, name, _ := strings.Cut(file, "/")
		p := filepath.Join("/sys/fs/cgroup", ctrl, c.CgroupPath, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Skipf("cgroup v1 file %s: %v", p, err)
		}
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("%s = %s, want %s", file, got, want)
		}
	}
	stats, err := n.rt.ContainerStats(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Memory.GetUsageBytes().GetValue() == 0 || stats.Cpu.GetUsageCoreNanoSeconds() == nil {
		t.Errorf("stats: %v", stats)
	}
}

func TestExec(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	sb, cfg := n.runPod("exec")
	id := n.start(sb, cfg, ctrConfig("app", 0, "sleep", "1000"))
	waitFor(t, 10*time.Second, "running", func() bool {
		return n.status(id).State == runtimeapi.ContainerState_CONTAINER_RUNNING
	})
	stdout, stderr, err := n.rt.ExecSync(ctx, id, []string{"sh", "-c", "echo hi; echo oops >&2; exit 7"}, 10)
	var ee utilexec.CodeExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 7 {
		t.Fatalf("ExecSync error %v, want exit code 7", err)
	}
	if string(stdout) != "hi\n" || string(stderr) != "oops\n" {
		t.Errorf("ExecSync output %q %q", stdout, stderr)
	}
	if _, _, err := n.rt.ExecSync(ctx, id, []string{"true"}, 10); err != nil {
		t.Errorf("exec true: %v", err)
	}
	// A command past its timeout is killed.
	start := time.Now()
	if _, _, err := n.rt.ExecSync(ctx, id, []string{"sleep", "100"}, 1); err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("timed-out exec: %v after %v", err, time.Since(start))
	}

	// Streaming exec with stdin, then with a TTY.
	s := n.rt.Streaming()
	var out bytes.Buffer
	err = s.Exec(ctx, id, []string{"sh", "-c", "cat; exit 4"}, strings.NewReader("piped"), nopWriteCloser{&out}, nopWriteCloser{io.Discard}, false, nil)
	if !errors.As(err, &ee) || ee.ExitStatus() != 4 || out.String() != "piped" {
		t.Errorf("streaming exec: %q %v", out.String(), err)
	}
	out.Reset()
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, "exit 5\n")
	}()
	err = s.Exec(ctx, id, []string{"sh"}, pr, nopWriteCloser{&out}, nil, true, nil)
	pw.Close()
	if !errors.As(err, &ee) || ee.ExitStatus() != 5 {
		t.Errorf("tty exec: %v (output %q)", err, out.String())
	}

	// Exec in a container that is not running fails.
	done := n.start(sb, cfg, ctrConfig("done", 0, "true"))
	n.waitExited(done)
	if _, _, err := n.rt.ExecSync(ctx, done, []string{"true"}, 5); err == nil {
		t.Error("exec in an exited container succeeded")
	}
}

func TestAttach(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	sb, cfg := n.runPod("attach")
	cc := ctrConfig("cat", 0, "sh", "-c", "while read l; do echo got:$l; done; echo bye")
	cc.Stdin, cc.StdinOnce = true, true
	id := n.start(sb, cfg, cc)
	var out bytes.Buffer
	err := n.rt.Streaming().Attach(ctx, id, strings.NewReader("one\ntwo\n"), nopWriteCloser{&out}, nopWriteCloser{io.Discard}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "got:one\ngot:two\nbye\n" {
		t.Errorf("attach output %q", out.String())
	}
	if st := n.waitExited(id); st.ExitCode != 0 {
		t.Errorf("exit %d", st.ExitCode)
	}
	if logs := readLog(t, n.status(id).LogPath); !strings.Contains(logs, "stdout F got:two") {
		t.Errorf("logs: %s", logs)
	}
}

// httpServer is a pod container serving "pong" on port 8080.
func httpServer(name string) *runtimeapi.ContainerConfig {
	return ctrConfig(name, 0, "sh", "-c", "mkdir -p /www && echo pong > /www/index.html && exec httpd -f -p 8080 -h /www")
}

func httpGet(rw io.ReadWriter) (string, error) {
	if _, err := io.WriteString(rw, "GET /index.html HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(rw)
	return string(b), err
}

func TestPortForward(t *testing.T) {
	n := newNode(t)
	sb, cfg := n.runPod("pf")
	n.start(sb, cfg, httpServer("web"))
	var resp string
	waitFor(t, 15*time.Second, "port-forward to answer", func() bool {
		client, server := net.Pipe()
		errCh := make(chan error, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		go func() { errCh <- n.rt.Streaming().PortForward(ctx, sb, 8080, server) }()
		_ = client.SetDeadline(time.Now().Add(5 * time.Second))
		r, _ := httpGet(client)
		client.Close()
		<-errCh
		resp = r
		return strings.Contains(r, "pong")
	})
	if !strings.HasPrefix(resp, "HTTP/1.") {
		t.Errorf("response %q", resp)
	}
}

func TestPodsReachEachOtherByIP(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	sbA, cfgA := n.runPod("server")
	sbB, cfgB := n.runPod("client")
	n.start(sbA, cfgA, httpServer("web"))
	client := n.start(sbB, cfgB, ctrConfig("client", 0, "sleep", "1000"))
	stA, err := n.rt.PodSandboxStatus(ctx, sbA, false)
	if err != nil {
		t.Fatal(err)
	}
	stB, _ := n.rt.PodSandboxStatus(ctx, sbB, false)
	ipA, ipB := stA.Status.Network.GetIp(), stB.Status.Network.GetIp()
	if !strings.HasPrefix(ipA, "10.42.0.") || !strings.HasPrefix(ipB, "10.42.0.") || ipA == ipB {
		t.Fatalf("pod IPs %q %q", ipA, ipB)
	}
	var out []byte
	waitFor(t, 15*time.Second, "client pod to fetch from the server pod", func() bool {
		// (busybox-static's wget crashes without the host's NSS libraries; nc does not.)
		out, _, err = n.rt.ExecSync(ctx, client, []string{"sh", "-c", fmt.Sprintf(`printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc -w 2 %s 8080`, ipA)}, 5)
		return err == nil && strings.Contains(string(out), "pong")
	})
	if !strings.HasPrefix(string(out), "HTTP/1.") {
		t.Errorf("got %q", out)
	}
	// The client sees its own address on eth0 and a default route.
	addr, _, err := n.rt.ExecSync(ctx, client, []string{"ip", "-4", "-o", "addr", "show", "eth0"}, 5)
	if err != nil || !strings.Contains(string(addr), ipB+"/24") {
		t.Errorf("eth0: %q %v", addr, err)
	}
}

func TestRuntimeRestartAdoptsContainers(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	sb, cfg := n.runPod("adopt")
	id := n.start(sb, cfg, ctrConfig("app", 0, "sh", "-c", "echo started; exec sleep 1000"))
	waitFor(t, 10*time.Second, "running", func() bool {
		return n.status(id).State == runtimeapi.ContainerState_CONTAINER_RUNNING
	})
	before, _ := n.rt.ContainerStatus(ctx, id, true)

	// A new runtime over the same data dir (the agent restarted).
	rt2 := n.newRuntime()
	n.rt = rt2
	list, err := rt2.ListContainers(ctx, nil)
	if err != nil || len(list) != 1 || list[0].Id != id || list[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after restart: %v %v", list, err)
	}
	after, _ := rt2.ContainerStatus(ctx, id, true)
	if after.Info["pid"] != before.Info["pid"] || after.Info["shimPid"] != before.Info["shimPid"] {
		t.Errorf("process changed: %v → %v", before.Info, after.Info)
	}
	if err := rt2.StartContainer(ctx, id); err == nil {
		t.Error("starting an adopted running container again succeeded")
	}
	// Exactly one sleep runs in the container.
	out, _, err := rt2.ExecSync(ctx, id, []string{"sh", "-c", "ps -o comm | grep -c sleep"}, 5)
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Errorf("sleep processes: %q %v", out, err)
	}
	sbs, _ := rt2.ListPodSandbox(ctx, nil)
	if len(sbs) != 1 || sbs[0].State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("sandboxes after restart: %v", sbs)
	}
	// The adopted container stops and reports its exit.
	if err := rt2.StopContainer(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if st := n.status(id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("after stop: %v %d", st.State, st.ExitCode)
	}
}

func TestRemovalLeavesNothingBehind(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	sb, cfg := n.runPod("gone")
	id := n.start(sb, cfg, ctrConfig("app", 0, "sleep", "1000"))
	waitFor(t, 10*time.Second, "running", func() bool {
		return n.status(id).State == runtimeapi.ContainerState_CONTAINER_RUNNING
	})
	// And one created but never started.
	if _, err := n.rt.CreateContainer(ctx, sb, ctrConfig("idle", 0, "true"), cfg); err != nil {
		t.Fatal(err)
	}
	st, _ := n.rt.ContainerStatus(ctx, id, true)
	initPid, _ := strconv.Atoi(st.Info["pid"])
	shimPid, _ := strconv.Atoi(st.Info["shimPid"])
	sbSt, _ := n.rt.PodSandboxStatus(ctx, sb, true)
	netns := sbSt.Info["netns"]
	podCgroup := sbSt.Info["cgroup"]
	if !processAlive(initPid) || !processAlive(shimPid) || len(cgroupDirs(podCgroup)) == 0 || len(mountsUnder(filepath.Join(n.dataDir, "agent"))) == 0 {
		t.Fatalf("setup: init %v shim %v cgroup %v mounts %v", processAlive(initPid), processAlive(shimPid), cgroupDirs(podCgroup), mountsUnder(filepath.Join(n.dataDir, "agent")))
	}

	if err := n.rt.StopPodSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if alloc, _ := n.bridge.Allocated(); len(alloc) != 0 {
		t.Errorf("IPs still allocated after stop: %v", alloc)
	}
	if err := n.rt.RemovePodSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if err := n.rt.RemovePodSandbox(ctx, sb); err != nil {
		t.Errorf("second remove: %v", err)
	}
	waitFor(t, 5*time.Second, "processes to be gone", func() bool {
		return !processAlive(initPid) && !processAlive(shimPid)
	})
	if m := mountsUnder(filepath.Join(n.dataDir, "agent")); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if d := cgroupDirs(podCgroup); len(d) > 0 {
		t.Errorf("pod cgroup left in %v", d)
	}
	if _, err := os.Stat(netns); !os.IsNotExist(err) {
		t.Errorf("netns file left: %v", err)
	}
	for _, dir := range []string{"containers", "sandboxes", "runc", "netns"} {
		entries, _ := os.ReadDir(filepath.Join(n.dataDir, "agent", dir))
		if len(entries) != 0 {
			t.Errorf("%s left in agent/%s", entries[0].Name(), dir)
		}
	}
	if leases, _ := n.images.Leases(); len(leases) != 0 {
		t.Errorf("image leases left: %v", leases)
	}
	if list, _ := n.rt.ListContainers(ctx, nil); len(list) != 0 {
		t.Errorf("containers listed: %v", list)
	}
}

func TestSecurityDefaults(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	sb, cfg := n.runPod("sec")
	cc := ctrConfig("app", 0, "sleep", "1000")
	cc.Linux.SecurityContext.ReadonlyRootfs = true
	cc.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}}
	hostFile := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hostFile, []byte("127.0.0.1 localhost test-hosts\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cc.Mounts = []*runtimeapi.Mount{{ContainerPath: "/etc/hosts", HostPath: hostFile, Readonly: true}}
	id := n.start(sb, cfg, cc)
	waitFor(t, 10*time.Second, "running", func() bool {
		return n.status(id).State == runtimeapi.ContainerState_CONTAINER_RUNNING
	})
	run := func(script string) string {
		out, errOut, err := n.rt.ExecSync(ctx, id, []string{"sh", "-c", script}, 5)
		if err != nil {
			t.Errorf("%s: %v %s", script, err, errOut)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run("grep -E '^(NoNewPrivs|CapEff|Seccomp):' /proc/self/status | tr -s '\\t ' ' '"); !strings.Contains(got, "NoNewPrivs: 1") || !strings.Contains(got, "CapEff: 0000000000000400") {
		t.Errorf("status: %s", got)
	} else if seccompBuilt && !strings.Contains(got, "Seccomp: 2") {
		t.Errorf("no seccomp filter: %s", got)
	}
	if got := run("touch /x 2>&1; echo $?"); !strings.HasSuffix(got, "1") {
		t.Errorf("read-only rootfs writable: %s", got)
	}
	if got := run("cat /etc/hosts"); !strings.Contains(got, "test-hosts") {
		t.Errorf("/etc/hosts mount: %s", got)
	}
	if got := run("ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/panic 2>/dev/null; echo $?"); got != "0\n1" {
		t.Errorf("masked /sys/firmware or writable /proc/sys: %q", got)
	}
	if got := run("hostname"); got != "sec" {
		t.Errorf("hostname %q", got)
	}
}

func TestContainersOutliveAKilledAgent(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SKIFF_TEST_AGENT=1", "SKIFF_TEST_DATA="+n.dataDir, "SKIFF_TEST_HOSTNS="+n.hostNS, "SKIFF_TEST_CGROUPS="+n.cgroups)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("test agent: %v", err)
	}
	id := strings.TrimSpace(line)
	// kill -9 the agent.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	rt := n.newRuntime()
	n.rt = rt
	st, err := rt.ContainerStatus(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after the agent died: %v %s", st.Status.State, st.Status.Message)
	}
	shimPid, _ := strconv.Atoi(st.Info["shimPid"])
	if !processAlive(shimPid) {
		t.Fatal("shim died with the agent")
	}
	if out, _, err := rt.ExecSync(ctx, id, []string{"echo", "alive"}, 5); err != nil || string(out) != "alive\n" {
		t.Errorf("exec after the agent died: %q %v", out, err)
	}
	if err := rt.StopContainer(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if st := n.status(id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("exit after the agent died: %v %d", st.State, st.ExitCode)
	}
}

func TestInterruptedSandboxIsCleanedUp(t *testing.T) {
	n := newNode(t)
	// What a RunPodSandbox killed right after making the namespaces leaves.
	id := newID()
	dir := n.rt.sandboxDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	netns := filepath.Join(n.rt.netnsDir, id)
	if err := createNamespaces(nsPaths{net: netns, ipc: filepath.Join(dir, "ipc"), uts: filepath.Join(dir, "uts")}, "x"); err != nil {
		t.Fatal(err)
	}
	if len(mountsUnder(filepath.Join(n.dataDir, "agent"))) != 3 {
		t.Fatalf("setup: %v", mountsUnder(filepath.Join(n.dataDir, "agent")))
	}
	n.rt = n.newRuntime()
	if m := mountsUnder(filepath.Join(n.dataDir, "agent")); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("sandbox dir left: %v", err)
	}
}

func TestNewNodeImportsDroppedArchives(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	archive := busyboxArchive(t)
	dataDir := t.TempDir()
	imagesDir := filepath.Join(dataDir, "agent", "images")
	if err := os.MkdirAll(imagesDir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(imagesDir, "busybox.tar"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	// No pod is started: the bridge would be in this process's namespace.
	rt, images, err := NewNode(context.Background(), NodeConfig{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	st, err := images.ImageStatus(context.Background(), &runtimeapi.ImageSpec{Image: testImage}, false)
	if err != nil || st.Image == nil {
		t.Fatalf("dropped archive not imported: %v %v", st, err)
	}
	if err := rt.UpdateRuntimeConfig(context.Background(), &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.42.3.0/24"}}); err != nil {
		t.Fatal(err)
	}
}
