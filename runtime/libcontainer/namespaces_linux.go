package libcontainer

import (
	"errors"
	"fmt"
	"os"
	goruntime "runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nsPaths are where a sandbox's new namespaces are bind-mounted; an empty
// path means the namespace is the host's.
type nsPaths struct {
	net, ipc, uts string
}

// createNamespaces makes new network, IPC and UTS namespaces (those with a
// path), sets the hostname in the UTS one, brings loopback up in the network
// one, and bind-mounts each on its path so that it outlives every process.
//
// The work happens on a locked OS thread that unshares its namespaces and is
// never unlocked, so the Go runtime ends that thread afterwards instead of
// handing it to other goroutines.
func createNamespaces(p nsPaths, hostname string) error {
	flags := 0
	if p.net != "" {
		flags |= unix.CLONE_NEWNET
	}
	if p.ipc != "" {
		flags |= unix.CLONE_NEWIPC
	}
	if p.uts != "" {
		flags |= unix.CLONE_NEWUTS
	}
	if flags == 0 {
		return nil
	}
	errCh := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		errCh <- func() error {
			if err := unix.Unshare(flags); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if p.uts != "" && hostname != "" {
				if err := unix.Sethostname([]byte(hostname)); err != nil {
					return fmt.Errorf("sethostname: %w", err)
				}
			}
			if p.net != "" {
				lo, err := netlink.LinkByName("lo")
				if err != nil {
					return fmt.Errorf("loopback: %w", err)
				}
				if err := netlink.LinkSetUp(lo); err != nil {
					return fmt.Errorf("loopback up: %w", err)
				}
			}
			self := fmt.Sprintf("/proc/%d/task/%d/ns/", os.Getpid(), unix.Gettid())
			for _, b := range []struct{ kind, path string }{{"net", p.net}, {"ipc", p.ipc}, {"uts", p.uts}} {
				if b.path == "" {
					continue
				}
				if err := bindNamespace(self+b.kind, b.path); err != nil {
					return err
				}
			}
			return nil
		}()
		// No UnlockOSThread: this thread's namespaces are not the process's.
	}()
	err := <-errCh
	if err != nil {
		// Undo the bind mounts that were made.
		for _, path := range []string{p.net, p.ipc, p.uts} {
			if path != "" {
				_ = removeNamespace(path)
			}
		}
	}
	return err
}

func bindNamespace(src, target string) error {
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("namespace file: %w", err)
	}
	f.Close()
	if err := unix.Mount(src, target, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(target)
		return fmt.Errorf("bind-mount namespace %s on %s: %w", src, target, err)
	}
	return nil
}

// removeNamespace unmounts a namespace bind mount and removes its file; a
// missing one is fine.
func removeNamespace(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// isNamespaceMount reports whether path is a bind mount of a namespace.
func isNamespaceMount(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}
