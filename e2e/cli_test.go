package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestCLIErrors: mistakes a newcomer makes end the process at once with a
// non-zero status and a message that says what to do.
func TestCLIErrors(t *testing.T) {
	bin := testutil.Binary(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	run := func(asNobody bool, args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		if asNobody {
			cmd = exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
		}
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return string(out), code
	}
	addr := testutil.LoopbackAddr(t)
	type cliCase struct {
		nobody bool
		args   []string
		want   string
	}
	cases := []cliCase{
		{false, []string{"server", "--data-dir", dir + "/j", "--bind-address", addr, "--join", addr + ":6443", "--token", "x"},
			"give https://" + addr + ":6443"},
		{false, []string{"agent", "--data-dir", dir + "/a", "--server", addr + ":6443", "--token", "x"},
			"give https://" + addr + ":6443"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases,
			cliCase{true, []string{"server", "--data-dir", dir + "/n", "--bind-address", addr}, "must run as root"},
			cliCase{true, []string{"agent", "--data-dir", dir + "/na", "--server", "https://" + addr + ":6443", "--token", "x"}, "must run as root"})
	} else {
		t.Log("not root: the run-as-non-root cases need setpriv as root; skipped")
	}
	for _, c := range cases {
		out, code := run(c.nobody, c.args...)
		if code == 0 || !strings.Contains(out, c.want) {
			t.Errorf("skiff %s (as nobody: %v): exit %d, output %q; want a failure saying %q", strings.Join(c.args, " "), c.nobody, code, out, c.want)
		}
	}
}

// TestWrongTokenMessage: a master joining with a mistyped server token
// stops at once saying which token it needs (it printed "401
// Unauthorized: Unauthorized" before).
func TestWrongTokenMessage(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "tok"})
	m.Start()
	m.WaitReady(30 * time.Second)
	tok := m.Token()
	bad := tok[:len(tok)-1] + "x"
	if strings.HasSuffix(tok, "x") {
		bad = tok[:len(tok)-1] + "y"
	}
	addr := testutil.LoopbackAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testutil.Binary(t), "server", "--data-dir", t.TempDir(), "--bind-address", addr, "--disable-agent",
		"--node-name", "tok2", "--join", m.URL(), "--token", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the master refused the token: --join needs the cluster's server token") {
		t.Fatalf("join with a wrong token: %v\n%s", err, out)
	}
}
