package agent

import (
	"os"
	"syscall"
	"testing"
)

func statGID(t *testing.T, fi os.FileInfo) uint32 {
	t.Helper()
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("no owner information for %s", fi.Name())
	}
	return st.Gid
}
