package agent

import (
	"io/fs"
	"os"
	"syscall"
)

// fsGroupApplied reports whether dir already belongs to group gid with the
// setgid bit set.
func fsGroupApplied(dir string, gid int64) (bool, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return false, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return false, errNoStat
	}
	return int64(sys.Gid) == gid && st.Mode()&fs.ModeSetgid != 0, nil
}
