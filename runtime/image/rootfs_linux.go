package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Rootfs is a container's root filesystem: an overlay of the image layers
// (read-only, shared) and the container's own upper directory.
type Rootfs struct {
	// Path is the mounted root filesystem, <dir>/rootfs.
	Path string
	// Image is the record of the image the rootfs was made from.
	Image *Image
}

// maxMountData is the size limit of mount(2) options: one page.
const maxMountData = 4096

// MountRootfs mounts an overlay root filesystem for container id at
// <dir>/rootfs, with upper and work directories in dir, from the layers of
// the image ref names. It records a lease so that the image is not removed
// or garbage-collected while the container exists. Calling it again for a
// mounted rootfs is a no-op.
func (s *Store) MountRootfs(ref, id, dir string) (*Rootfs, error) {
	if err := validLeaseID(id); err != nil {
		return nil, err
	}
	var img *Image
	err := s.withLock(func(ix *index) (bool, error) {
		found, err := ix.lookup(ref)
		if err != nil {
			return false, err
		}
		found.LastUsed = time.Now().UTC()
		img = found.clone()
		return true, writeFileAtomic(s.leasePath(id), []byte(found.ID), 0o600)
	})
	if err != nil {
		return nil, err
	}
	rootfs := filepath.Join(dir, "rootfs")
	upper := filepath.Join(dir, "upper")
	work := filepath.Join(dir, "work")
	for _, d := range []string{rootfs, upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if mounted, err := isMountPoint(rootfs); err != nil {
		return nil, err
	} else if mounted {
		return &Rootfs{Path: rootfs, Image: img}, nil
	}
	var lowers []string
	for i := len(img.Layers) - 1; i >= 0; i-- {
		lowers = append(lowers, s.LayerPath(img.Layers[i]))
	}
	if len(lowers) == 0 {
		empty := filepath.Join(dir, "empty")
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return nil, err
		}
		lowers = []string{empty}
	}
	data := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(data) >= maxMountData {
		return nil, fmt.Errorf("rootfs of %s: %d layers make overlay options longer than a page (%d bytes); use a shorter data dir", id, len(lowers), len(data))
	}
	if err := unix.Mount("overlay", rootfs, "overlay", 0, data); err != nil {
		return nil, fmt.Errorf("mount overlay rootfs of %s: %w", id, err)
	}
	return &Rootfs{Path: rootfs, Image: img}, nil
}

// UnmountRootfs unmounts the rootfs of container id in dir, removes dir
// (with the container's upper directory) and drops the image lease.
func (s *Store) UnmountRootfs(id, dir string) error {
	if err := validLeaseID(id); err != nil {
		return err
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := unmountAll(rootfs); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Remove(s.leasePath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// unmountAll unmounts everything mounted at p (stacked mounts too).
func unmountAll(p string) error {
	for i := 0; i < 16; i++ {
		err := unix.Unmount(p, unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // not a mount point (any more)
		case errors.Is(err, unix.EBUSY):
			if err := unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("unmount %s: %w", p, err)
			}
		default:
			return fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted", p)
}

// isMountPoint reports whether p is the root of a mount.
func isMountPoint(p string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return false, err
	}
	if err := unix.Lstat(filepath.Dir(p), &parent); err != nil {
		return false, err
	}
	if st.Dev != parent.Dev {
		return true, nil
	}
	// Same device: a bind mount of the same filesystem still is one if the
	// mount IDs differ; overlay always has its own device, so this is enough
	// for rootfs directories.
	return false, nil
}
