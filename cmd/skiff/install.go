package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/agent/supervisor"
)

// hostPaths are where install writes and uninstall removes, below Root.
type hostPaths struct {
	Root    string
	UnitDir string
	InitDir string
	BinPath string
}

func (p hostPaths) at(path string) string { return filepath.Join(p.Root, path) }

// live reports whether the paths are this host's own (no --root): only
// then are services enabled, started and stopped.
func (p hostPaths) live() bool { return p.Root == "" || filepath.Clean(p.Root) == "/" }

func addHostPathFlags(cmd *cobra.Command, p *hostPaths) {
	f := cmd.Flags()
	f.StringVar(&p.Root, "root", "/", "prefix of every path below (an image being built, a test): services are then not enabled, started or stopped")
	f.StringVar(&p.UnitDir, "unit-dir", "/etc/systemd/system", "where systemd units go")
	f.StringVar(&p.InitDir, "init-dir", "/etc/init.d", "where OpenRC and SysV init scripts go")
	f.StringVar(&p.BinPath, "bin-path", "/usr/local/bin/skiff", "where the binary is installed")
}

// detectInit is the host's init system: systemd when it runs, OpenRC when
// openrc-run exists, else SysV.
func detectInit() string {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		return supervisor.InitSystemd
	}
	if _, err := os.Stat("/sbin/openrc-run"); err == nil {
		return supervisor.InitOpenRC
	}
	return supervisor.InitSysV
}

func newInstallCommand() *cobra.Command {
	var (
		paths    hostPaths
		initSys  string
		copyBin  bool
		start    bool
		watchdog int
	)
	cmd := &cobra.Command{
		Use:   "install server|agent [flags of the server or agent]",
		Short: "Install skiff as a service: a systemd unit, or an OpenRC or SysV init script",
		Long: `Install skiff as a service of this host (docs/install.md).

The binary is copied to --bin-path, and the service skiff-server or
skiff-agent is written: a systemd unit (Type=notify, WatchdogSec,
KillMode=process) where systemd runs, else an OpenRC or a SysV init script.
Everything after the role goes into the service's command line; give
install's own flags before the role:

  skiff install agent --server https://MASTER:6443 --token-file /etc/skiff/token

The service is then enabled and started (not with --root or --start=false).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			role := args[0]
			if role != "server" && role != "agent" {
				return fmt.Errorf("install what? %q: give server or agent", role)
			}
			if initSys == "" {
				initSys = detectInit()
			}
			svc := supervisor.Service{Role: role, Bin: paths.BinPath, Args: args[1:], WatchdogSec: watchdog}
			if copyBin {
				if err := installBinary(paths.at(paths.BinPath)); err != nil {
					return err
				}
			}
			var path, text string
			mode := os.FileMode(0o644)
			switch initSys {
			case supervisor.InitSystemd:
				path, text = paths.at(filepath.Join(paths.UnitDir, svc.Name()+".service")), svc.SystemdUnit()
			case supervisor.InitOpenRC:
				path, text, mode = paths.at(filepath.Join(paths.InitDir, svc.Name())), svc.OpenRCScript(), 0o755
			case supervisor.InitSysV:
				path, text, mode = paths.at(filepath.Join(paths.InitDir, svc.Name())), svc.SysVScript(), 0o755
			default:
				return fmt.Errorf("--init %q: systemd, openrc or sysv", initSys)
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := writeFileAtomic(path, []byte(text), mode); err != nil {
				return err
			}
			slog.Info("service written", "init", initSys, "path", path)
			if !start || !paths.live() {
				return nil
			}
			return enableService(initSys, svc.Name())
		},
	}
	addHostPathFlags(cmd, &paths)
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after the role are the service's
	f.StringVar(&initSys, "init", "", "init system: systemd, openrc or sysv (default: the host's)")
	f.BoolVar(&copyBin, "copy-binary", true, "copy this binary to --bin-path")
	f.BoolVar(&start, "start", true, "enable and start the service")
	f.IntVar(&watchdog, "watchdog-sec", 60, "systemd WatchdogSec of the unit")
	return cmd
}

// installBinary copies the running executable to path (atomically: a
// running copy there keeps its inode).
func installBinary(path string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if same, _ := filepath.EvalSymlinks(self); same == path {
		return nil
	}
	b, err := os.ReadFile(self)
	if err != nil {
		return fmt.Errorf("read own binary: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o755)
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return nil
}

// run runs an init system's command, its output to ours.
func run(name string, args ...string) error {
	c := exec.Command(name, args...)
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %v: %w", name, args, err)
	}
	return nil
}

func enableService(initSys, name string) error {
	switch initSys {
	case supervisor.InitSystemd:
		if err := run("systemctl", "daemon-reload"); err != nil {
			return err
		}
		return run("systemctl", "enable", "--now", name)
	case supervisor.InitOpenRC:
		if err := run("rc-update", "add", name, "default"); err != nil {
			return err
		}
		return run("rc-service", name, "start")
	default:
		for _, tool := range [][]string{{"update-rc.d", name, "defaults"}, {"chkconfig", "--add", name}} {
			if _, err := exec.LookPath(tool[0]); err == nil {
				if err := run(tool[0], tool[1:]...); err != nil {
					return err
				}
				break
			}
		}
		return run(filepath.Join("/etc/init.d", name), "start")
	}
}
