package nettools

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NewNetNS creates a network namespace with loopback up and bind-mounts it
// at path, so that it lives without any process in it. Tests use one as the
// node's "host" namespace.
func NewNetNS(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	errCh := make(chan error, 1)
	go func() {
		// Locked and never unlocked: the thread ends with the goroutine
		// instead of going back to the scheduler in another namespace.
		goruntime.LockOSThread()
		errCh <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if lo, err := netlink.LinkByName("lo"); err == nil {
				if err := netlink.LinkSetUp(lo); err != nil {
					return err
				}
			}
			src := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
			return unix.Mount(src, path, "none", unix.MS_BIND, "")
		}()
	}()
	if err := <-errCh; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// DeleteNetNS unmounts a namespace made by NewNetNS and removes its file.
func DeleteNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Do runs fn on an OS thread inside the network namespace at path: sockets
// fn opens belong to it. fn must not start goroutines that open sockets.
func Do(path string, fn func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer unix.Close(target)
	errCh := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			goruntime.UnlockOSThread()
			errCh <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			goruntime.UnlockOSThread()
			errCh <- fmt.Errorf("setns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err == nil {
			goruntime.UnlockOSThread()
		}
		errCh <- ferr
	}()
	return <-errCh
}

// Sysctl writes value to /proc/sys/<name> (e.g. "net/ipv4/ip_forward")
// in the network namespace at nsPath ("" for this process's): net.*
// settings are per namespace, and the kernel resolves them by the thread
// that opens the file.
func Sysctl(nsPath, name, value string) error {
	write := func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", name, err)
		}
		return nil
	}
	if nsPath == "" {
		return write()
	}
	return Do(nsPath, write)
}
