package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestInstallWritesService: `skiff install` under a temporary --root
// copies the binary and writes a systemd unit (Type=notify, the watchdog,
// KillMode=process, the flags after the role on ExecStart, quoted),
// which systemd-analyze verify accepts where it exists; with --init
// openrc or sysv it writes an init script a shell parses. Before, there
// was no install command.
func TestInstallWritesService(t *testing.T) {
	bin := testutil.Binary(t)
	root := t.TempDir()
	out, err := exec.Command(bin, "install", "--root", root, "--init", "systemd", "agent",
		"--server", "https://10.0.0.1:6443", "--token-file", "/etc/skiff/token", "--data-dir", "/srv/skiff data%").CombinedOutput()
	if err != nil {
		t.Fatalf("install: %v: %s", err, out)
	}
	unitPath := filepath.Join(root, "etc/systemd/system/skiff-agent.service")
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{
		"\nExecStart=/usr/local/bin/skiff agent --server https://10.0.0.1:6443 --token-file /etc/skiff/token --data-dir \"/srv/skiff data%%\"\n",
		"\nType=notify\n", "\nNotifyAccess=main\n", "\nWatchdogSec=60s\n", "\nKillMode=process\n", "\nDelegate=yes\n",
		"\nRestart=always\n", "\nWantedBy=multi-user.target\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	self, _ := os.Stat(bin)
	if st, err := os.Stat(filepath.Join(root, "usr/local/bin/skiff")); err != nil || st.Size() != self.Size() || st.Mode().Perm() != 0o755 {
		t.Errorf("installed binary: %v %v", st, err)
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify resolves ExecStart: point it at the installed copy.
		verify := filepath.Join(t.TempDir(), "skiff-agent.service")
		if err := os.WriteFile(verify, []byte(strings.Replace(unit, "ExecStart=/usr/local/bin/skiff", "ExecStart="+filepath.Join(root, "usr/local/bin/skiff"), 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sa, "verify", verify).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify: %v: %s", err, out)
		}
	} else {
		t.Log("systemd-analyze is not installed: the unit is checked by its text only")
	}
	for _, init := range []string{"openrc", "sysv"} {
		r := t.TempDir()
		out, err := exec.Command(bin, "install", "--root", r, "--init", init, "--copy-binary=false", "server", "--cluster-cidr", "10.99.0.0/16").CombinedOutput()
		if err != nil {
			t.Fatalf("install --init %s: %v: %s", init, err, out)
		}
		p := filepath.Join(r, "etc/init.d/skiff-server")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "server --cluster-cidr 10.99.0.0/16") {
			t.Errorf("%s script lacks the command line:\n%s", init, b)
		}
		if init == "sysv" {
			if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
				t.Errorf("sh -n %s: %v: %s", p, err, out)
			}
		}
		if _, err := os.Stat(filepath.Join(r, "usr/local/bin/skiff")); !os.IsNotExist(err) {
			t.Errorf("--copy-binary=false copied the binary: %v", err)
		}
	}
	if out, err := exec.Command(bin, "install", "--root", root, "kubelet").CombinedOutput(); err == nil {
		t.Errorf("install kubelet succeeded: %s", out)
	}
}
