package testutil

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// SlowDisk mounts a FUSE pass-through of a fresh directory, served by the
// test process, whose every fsync and fdatasync takes delay longer than
// the disk under it: a slow disk (an SD card, a busy SAN) for the Raft
// log, where the kernel has no dm-delay. It returns the mount point,
// unmounted at cleanup. Root only (mount(2) on /dev/fuse); it skips
// otherwise.
func SlowDisk(t testing.TB, delay time.Duration) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SlowDisk mounts a FUSE file system: run as root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("SlowDisk needs /dev/fuse: %v", err)
	}
	dir := t.TempDir()
	backing, mnt := filepath.Join(dir, "backing"), filepath.Join(dir, "mnt")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		t.Fatal(err)
	}
	root := &fs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &slowNode{LoopbackNode: fs.LoopbackNode{RootData: r}, delay: delay}
	}
	rootNode := root.NewNode(root, nil, "", &st)
	root.RootNode = rootNode
	server, err := fs.Mount(mnt, rootNode, &fs.Options{MountOptions: fuse.MountOptions{
		DirectMount: true, AllowOther: true, FsName: "skiff-slowdisk", Name: "slowdisk",
	}})
	if err != nil {
		t.Skipf("cannot mount a FUSE file system here: %v", err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			// A process still holding a file: detach it lazily.
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	return mnt
}

// slowNode is a loopback node whose fsyncs wait delay first.
type slowNode struct {
	fs.LoopbackNode
	delay time.Duration
}

var _ fs.NodeFsyncer = (*slowNode)(nil)

func (n *slowNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	time.Sleep(n.delay)
	if ff, ok := f.(fs.FileFsyncer); ok {
		return ff.Fsync(ctx, flags)
	}
	return 0 // a directory: nothing to sync below
}
