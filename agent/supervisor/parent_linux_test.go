package supervisor

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary is its own supervised child: TestMain runs childMain
// when the parent (Run, in a test) started it.
const envMode = "SUPERVISOR_TEST_MODE"

func TestMain(m *testing.M) {
	if os.Getenv(EnvChild) == "1" {
		childMain()
		return
	}
	os.Exit(m.Run())
}

func childMain() {
	c, err := FromEnv()
	if err != nil || c == nil {
		os.Exit(10)
	}
	c.Serve(slog.Default())
	switch os.Getenv(envMode) {
	case "fail-start":
		os.Exit(2)
	case "crash-once":
		c.SetReady()
		if c.Restarts == 0 {
			time.Sleep(300 * time.Millisecond)
			os.Exit(3)
		}
	}
	c.SetReady()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	<-sigs
	os.Exit(0)
}

func testConfig(t *testing.T, mode string) Config {
	t.Helper()
	t.Setenv(envMode, mode)
	dir := t.TempDir()
	lock, err := os.Create(filepath.Join(dir, "skiff.lock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	return Config{LockFile: lock, SocketPath: filepath.Join(dir, SocketName), BackoffMin: 50 * time.Millisecond}
}

// TestRunStartFailure: a child that fails before it was ever ready is not
// restarted: Run returns its exit status.
func TestRunStartFailure(t *testing.T) {
	start := time.Now()
	code, err := Run(testConfig(t, "fail-start"))
	if err != nil || code != 2 {
		t.Fatalf("Run = %d, %v; want 2", code, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

// TestRunRestartsACrashedChild: a ready child that exits 3 is started
// again with the restart counted; SIGTERM to the parent reaches the
// child, which exits 0, and so does Run.
func TestRunRestartsACrashedChild(t *testing.T) {
	cfg := testConfig(t, "crash-once")
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() { c, err := Run(cfg); done <- result{c, err} }()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", cfg.SocketPath)
		}}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("no restarted child reports restarts_total 1")
		}
		resp, err := hc.Get("http://skiff/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "skiff_supervisor_restarts_total 1") {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.code != 0 {
			t.Fatalf("Run = %d, %v; want 0", r.code, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after SIGTERM")
	}
}
