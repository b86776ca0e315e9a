package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	// opaqueXattr marks an overlayfs directory whose lower contents are hidden.
	opaqueXattr = "trusted.overlay.opaque"
)

// unpackLayer extracts one uncompressed layer tar into dest (an empty
// directory) for use as an overlayfs lower directory: OCI whiteout files
// become overlay whiteouts (character device 0/0) and opaque markers set
// trusted.overlay.opaque=y on their directory. Owners, modes, extended
// attributes and times are kept. No entry may leave dest, nor pass through a
// symbolic link. It returns the bytes and inodes written.
func unpackLayer(r io.Reader, dest string) (size, inodes int64, err error) {
	tr := tar.NewReader(r)
	type dirTimes struct {
		path  string
		atime time.Time
		mtime time.Time
	}
	var dirs []dirTimes
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return size, inodes, fmt.Errorf("layer tar: %w", err)
		}
		rel := path.Clean("/" + hdr.Name)
		if rel == "/" {
			continue
		}
		dir, base := path.Split(rel)
		parent, err := ensureParent(dest, dir)
		if err != nil {
			return size, inodes, err
		}
		if base == whiteoutOpaque {
			if err := unix.Lsetxattr(parent, opaqueXattr, []byte("y"), 0); err != nil {
				return size, inodes, fmt.Errorf("opaque whiteout %s: %w", rel, err)
			}
			continue
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			target := filepath.Join(parent, strings.TrimPrefix(base, whiteoutPrefix))
			if err := os.RemoveAll(target); err != nil {
				return size, inodes, err
			}
			if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
				return size, inodes, fmt.Errorf("whiteout %s: %w", rel, err)
			}
			inodes++
			continue
		}
		target := filepath.Join(parent, base)

		// A later entry replaces an earlier one, except a directory over a
		// directory which only updates its metadata.
		if fi, err := os.Lstat(target); err == nil {
			if !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
				if err := os.RemoveAll(target); err != nil {
					return size, inodes, err
				}
			}
		}

		mode := uint32(hdr.Mode) & 0o7777
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return size, inodes, err
			}
			dirs = append(dirs, dirTimes{target, hdr.AccessTime, hdr.ModTime})
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archives use TypeRegA
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
			if err != nil {
				return size, inodes, err
			}
			n, err := io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return size, inodes, fmt.Errorf("layer file %s: %w", rel, err)
			}
			size += n
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return size, inodes, err
			}
		case tar.TypeLink:
			src, err := linkSource(dest, hdr.Linkname)
			if err != nil {
				return size, inodes, fmt.Errorf("hard link %s: %w", rel, err)
			}
			if err := os.Link(src, target); err != nil {
				return size, inodes, err
			}
			inodes++
			continue // shares the inode, and so its metadata
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
			dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
			if err := unix.Mknod(target, kind|mode, int(dev)); err != nil {
				return size, inodes, fmt.Errorf("device %s: %w", rel, err)
			}
		default:
			// Sockets, GNU sparse/volume entries and the like have no place in a rootfs.
			continue
		}
		inodes++
		if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
			return size, inodes, fmt.Errorf("chown %s: %w", rel, err)
		}
		for k, v := range hdr.PAXRecords {
			name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
			if !ok {
				continue
			}
			if err := unix.Lsetxattr(target, name, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
				return size, inodes, fmt.Errorf("xattr %s on %s: %w", name, rel, err)
			}
		}
		if hdr.Typeflag != tar.TypeSymlink {
			// After chown, which clears set-user-ID and set-group-ID bits.
			if err := unix.Fchmodat(unix.AT_FDCWD, target, mode, 0); err != nil {
				return size, inodes, fmt.Errorf("chmod %s: %w", rel, err)
			}
		}
		if hdr.Typeflag != tar.TypeDir {
			if err := setTimes(target, hdr.AccessTime, hdr.ModTime); err != nil {
				return size, inodes, fmt.Errorf("times %s: %w", rel, err)
			}
		}
	}
	// Directory times last: adding entries changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setTimes(dirs[i].path, dirs[i].atime, dirs[i].mtime); err != nil {
			return size, inodes, err
		}
	}
	return size, inodes, nil
}

// ensureParent makes sure the directory dir (a clean absolute path inside the
// layer) exists under dest as real directories, never through a symbolic
// link, and returns its host path.
func ensureParent(dest, dir string) (string, error) {
	cur := dest
	for _, part := range strings.Split(strings.Trim(dir, "/"), "/") {
		if part == "" {
			continue
		}
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return "", err
			}
		case err != nil:
			return "", err
		case fi.Mode()&os.ModeSymlink != 0:
			return "", fmt.Errorf("layer entry under %s passes through a symbolic link", dir)
		case !fi.IsDir():
			return "", fmt.Errorf("layer entry under %s: %s is not a directory", dir, part)
		}
	}
	return cur, nil
}

// linkSource resolves a hard link target inside dest.
func linkSource(dest, linkname string) (string, error) {
	rel := path.Clean("/" + linkname)
	dir, base := path.Split(rel)
	parent, err := ensureParent(dest, dir)
	if err != nil {
		return "", err
	}
	src := filepath.Join(parent, base)
	fi, err := os.Lstat(src)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return "", fmt.Errorf("hard link to directory %s", linkname)
	}
	return src, nil
}

func setTimes(p string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if mtime.IsZero() {
		return nil
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}
