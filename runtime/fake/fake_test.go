package fake

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	utilexec "k8s.io/utils/exec"
)

func TestScriptedContainers(t *testing.T) {
	ctx := context.Background()
	f := NewFakeRuntime()
	if err := f.UpdateRuntimeConfig(ctx, &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.42.3.0/24"}}); err != nil {
		t.Fatal(err)
	}
	sbCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Uid: "u"}, LogDirectory: t.TempDir()}
	sb, err := f.RunPodSandbox(ctx, sbCfg, "")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.PodSandboxStatus(ctx, sb, false)
	if ip := st.Status.Network.GetIp(); ip != "10.42.3.2" {
		t.Errorf("pod IP %q", ip)
	}
	start := func(name string, args ...string) string {
		id, err := f.CreateContainer(ctx, sb, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: name}, Args: args, LogPath: name + "/0.log"}, sbCfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	exit3 := start("exit", "exit=3")
	oom := start("oom", "oom")
	later := start("later", "exit=0", "after=50ms")
	web := start("web", "http=8080")
	for id, want := range map[string]int32{exit3: 3, oom: 137} {
		c, _ := f.Container(id)
		if c.State != runtimeapi.ContainerState_CONTAINER_EXITED || c.ExitCode != want {
			t.Errorf("%s: state %v exit %d", c.Config.Metadata.Name, c.State, c.ExitCode)
		}
	}
	if c, _ := f.Container(oom); c.Reason != "OOMKilled" {
		t.Errorf("oom reason %q", c.Reason)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _ := f.Container(later)
		if c.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("after= did not exit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// exec: built-in commands and exit codes.
	if _, _, err := f.ExecSync(ctx, web, []string{"touch", "/fail-http"}, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.ExecSync(ctx, web, []string{"test", "-f", "/fail-http"}, 1); err != nil {
		t.Errorf("test -f: %v", err)
	}
	var ee utilexec.ExitError
	if _, _, err := f.ExecSync(ctx, web, []string{"sh", "-c", "exit 4"}, 1); !errors.As(err, &ee) || ee.ExitStatus() != 4 {
		t.Errorf("exit 4: %v", err)
	}
	// The simulated HTTP server answers 500 while /fail-http exists.
	conn, err := f.DialContext(ctx, "tcp", "10.42.3.2:8080")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://10.42.3.2:8080/", nil)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil || resp.StatusCode != 500 {
		t.Errorf("HTTP: %v %v", resp, err)
	}
	conn.Close()
	if _, err := f.DialContext(ctx, "tcp", "10.42.3.2:9999"); err == nil {
		t.Errorf("dial to a closed port succeeded")
	}
	// StopContainer: SIGTERM → 143.
	if err := f.StopContainer(ctx, web, 5); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.Container(web); c.ExitCode != 143 {
		t.Errorf("stopped exit %d", c.ExitCode)
	}
	if err := f.RemovePodSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if n := len(f.ContainerIDs("")); n != 0 || f.SandboxCount() != 0 {
		t.Errorf("%d containers, %d sandboxes left", n, f.SandboxCount())
	}
}
