package server

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseBinaryPages asks the kernel to page out this process's resident
// pages of its own executable (MADV_PAGEOUT). A witness uses it: the one
// skiff binary is large, and starting it (every package's init, the
// server's wiring) touches tens of MiB of code and read-only data that a
// witness never runs again, each fault mapping 64 KiB around it. Those
// pages are clean and backed by the file: paging them out costs nothing,
// and the code the witness does run faults back in. The kernel skips
// pages other processes also map (another skiff on the same box). It
// returns the executable's resident KiB before and after.
func releaseBinaryPages() (before, after int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, 0, fmt.Errorf("find the executable: %w", err)
	}
	before, err = binaryResidentKiB(exe)
	if err != nil {
		return 0, 0, err
	}
	ranges, err := binaryMappings(exe)
	if err != nil {
		return before, before, err
	}
	for _, r := range ranges {
		// MADV_RANDOM first: no read-ahead when a page faults back in, so
		// the page cache (and the fault-around that maps what it holds)
		// brings back only the pages that are run.
		for _, advice := range []uintptr{unix.MADV_RANDOM, unix.MADV_PAGEOUT} {
			if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], advice); errno != 0 {
				return before, before, fmt.Errorf("madvise(%d) %#x-%#x: %w", advice, r[0], r[1], errno)
			}
		}
	}
	after, err = binaryResidentKiB(exe)
	return before, after, err
}

// binaryMappings lists the [start, end) address ranges of the read-only
// (code and constant data) mappings of exe in /proc/self/maps.
func binaryMappings(exe string) ([][2]uintptr, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][2]uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// address perms offset dev inode pathname
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			return nil, fmt.Errorf("/proc/self/maps: bad range %q", fields[0])
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("/proc/self/maps: bad range %q", fields[0])
		}
		out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}

// binaryResidentKiB sums the Rss of exe's mappings in /proc/self/smaps.
func binaryResidentKiB(exe string) (int, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[5] == exe
			continue
		}
		if in && fields[0] == "Rss:" && len(fields) >= 2 {
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				return 0, fmt.Errorf("/proc/self/smaps: %q: %w", line, err)
			}
			total += n
		}
	}
	return total, sc.Err()
}
