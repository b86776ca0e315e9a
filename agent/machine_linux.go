package agent

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// machineCPUs is the number of CPUs of the node.
func machineCPUs() int { return runtime.NumCPU() }

// machineMemory is the node's memory in bytes (/proc/meminfo MemTotal).
func machineMemory() int64 {
	v, _ := meminfo("MemTotal")
	return v
}

// meminfo returns a /proc/meminfo field in bytes.
func meminfo(field string) (int64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		parts := strings.Fields(rest)
		if len(parts) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil {
			return 0, false
		}
		if len(parts) > 1 && parts[1] == "kB" {
			n *= 1024
		}
		return n, true
	}
	return 0, false
}

// fsStats returns the capacity and the available bytes of the file
// system holding path.
func fsStats(path string) (capacity, available int64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, false
	}
	return int64(st.Blocks) * st.Bsize, int64(st.Bavail) * st.Bsize, true
}

// pidStats returns the number of processes and the PID limit.
func pidStats() (procs, max int64, ok bool) {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return 0, 0, false
	}
	max, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0, 0, false
	}
	return int64(si.Procs), max, true
}

// kernelVersion is uname -r.
func kernelVersion() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// osImage is PRETTY_NAME from /etc/os-release.
func osImage() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
