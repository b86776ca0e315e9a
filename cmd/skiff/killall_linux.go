package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/agent/supervisor"
	"github.com/skiff-io/skiff/server/servicealloc"
)

func hostCommands() []*cobra.Command {
	return []*cobra.Command{newInstallCommand(), newKillallCommand(), newUninstallCommand()}
}

type killallOptions struct {
	DataDirs         []string
	CgroupParent     string
	KeepEmptyCgroups bool
	ServiceCIDR      string
}

func addKillallFlags(cmd *cobra.Command, o *killallOptions) {
	f := cmd.Flags()
	f.StringSliceVar(&o.DataDirs, "data-dir", []string{"/var/lib/skiff"}, "data dir(s) of the servers and agents to stop")
	f.StringVar(&o.CgroupParent, "cgroup-parent", "/skiff", "Skiff's cgroup parent: the pods' cgroups are below it, and its empty cgroups are removed")
	f.BoolVar(&o.KeepEmptyCgroups, "keep-empty-cgroups", false, "remove only the pods' own cgroups (a host shared with other skiff data dirs, tests)")
	f.StringVar(&o.ServiceCIDR, "service-cidr", servicealloc.DefaultServiceCIDR, "Service range: its addresses on lo (cluster DNS, userspace proxy) are removed")
}

func (o killallOptions) killall() error {
	cidr, err := netip.ParsePrefix(o.ServiceCIDR)
	if err != nil {
		return fmt.Errorf("--service-cidr: %w", err)
	}
	if err := requireRoot("skiff killall"); err != nil {
		return err
	}
	var errs []error
	for _, d := range o.DataDirs {
		if err := supervisor.Killall(supervisor.KillallConfig{DataDir: d, CgroupParent: o.CgroupParent,
			KeepEmptyCgroups: o.KeepEmptyCgroups, ServiceCIDR: cidr, Logger: slog.Default()}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

func newKillallCommand() *cobra.Command {
	var o killallOptions
	cmd := &cobra.Command{
		Use:   "killall",
		Short: "Stop everything Skiff runs on this host (server, agent, containers, shims, mounts, network), keeping its data",
		Long: `Stop everything Skiff started on this host, in this network namespace:
the server or agent holding --data-dir (SIGTERM, then SIGKILL after 20s),
the pods' containers (through their cgroups, then removed), the shims,
the mounts under the data dir, the bridge skiff0, skiff.vxlan and the
pods' veths, the nftables tables skiff-*, the routes of Skiff's protocol
(83) and the Service addresses on lo. The data dir stays: a later start
resumes from it. As k3s-killall.sh.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return o.killall() },
	}
	addKillallFlags(cmd, &o)
	return cmd
}

func newUninstallCommand() *cobra.Command {
	var (
		o     killallOptions
		paths hostPaths
	)
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Stop everything Skiff runs on this host and remove its services, binary and data",
		Long: `Stop and disable the skiff-server and skiff-agent services, do what
skiff killall does, then remove the services' files, the installed binary
(--bin-path) and the data dir(s). As k3s-uninstall.sh.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot("skiff uninstall"); err != nil {
				return err
			}
			var errs []error
			names := []string{"skiff-server", "skiff-agent"}
			if paths.live() {
				stopServices(names)
			}
			if err := o.killall(); err != nil {
				errs = append(errs, err)
			}
			for _, n := range names {
				for _, p := range []string{filepath.Join(paths.UnitDir, n+".service"), filepath.Join(paths.InitDir, n)} {
					if err := os.Remove(paths.at(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
						errs = append(errs, err)
					}
				}
			}
			if paths.live() {
				if _, err := os.Stat("/run/systemd/system"); err == nil {
					_ = run("systemctl", "daemon-reload")
				}
			}
			if err := os.Remove(paths.at(paths.BinPath)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			for _, d := range o.DataDirs {
				if err := removeDataDir(d); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	addKillallFlags(cmd, &o)
	addHostPathFlags(cmd, &paths)
	return cmd
}

// stopServices stops and disables the services through the host's init
// system; what is not installed is skipped.
func stopServices(names []string) {
	for _, n := range names {
		switch detectInit() {
		case supervisor.InitSystemd:
			_ = run("systemctl", "disable", "--now", n)
		case supervisor.InitOpenRC:
			if _, err := os.Stat(filepath.Join("/etc/init.d", n)); err == nil {
				_ = run("rc-service", n, "stop")
				_ = run("rc-update", "del", n, "default")
			}
		default:
			if _, err := os.Stat(filepath.Join("/etc/init.d", n)); err == nil {
				_ = run(filepath.Join("/etc/init.d", n), "stop")
			}
		}
	}
}

// removeDataDir removes a data dir once nothing is mounted below it (a
// host path volume's bind mount must not be emptied through it).
func removeDataDir(d string) error {
	abs, err := filepath.Abs(d)
	if err != nil {
		return err
	}
	if strings.Count(abs, "/") < 2 { // "/", "/var": never a data dir
		return fmt.Errorf("refusing to remove data dir %s", abs)
	}
	if err := supervisor.UnmountUnder(abs, slog.Default()); err != nil {
		return fmt.Errorf("data dir %s: still mounted: %w", abs, err)
	}
	if err := os.RemoveAll(abs); err != nil {
		return fmt.Errorf("remove data dir: %w", err)
	}
	return nil
}
