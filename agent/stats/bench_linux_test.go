package stats

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkCollect100Containers measures one collection cycle of a node
// running 50 pods of 2 containers (100 containers) on cgroup v1 and v2
// fixture trees: every cgroup read, each pod's network from /proc, each
// container's writable layer and log dir and each pod's volume walked (the
// walk cache is bypassed: the worst cycle; walks-cached keeps it, as
// when directories are walked less often than stats are read), the node's
// /proc figures. It
// reports the CPU time (user+system) per cycle and what that is as a share
// of one core at the default 10s interval.
func BenchmarkCollect100Containers(b *testing.B) {
	for _, bc := range []struct {
		v    string
		walk bool
	}{{"v1", true}, {"v2", true}, {"v1", false}} {
		v := bc.v
		name := "cgroup=" + v
		if !bc.walk {
			name += "/walks-cached"
		}
		b.Run(name, func(b *testing.B) {
			root := b.TempDir()
			targets := benchTree(b, root, v, 50, 2)
			c, err := NewCgroupCollector(CgroupConfig{CgroupRoot: filepath.Join(root, "cg"), Logger: testLoggerQuiet()})
			if err != nil {
				b.Fatal(err)
			}
			cc := c.(*cgroupCollector)
			if !bc.walk {
				cc.du = newDUCache(time.Hour)
			}
			ctx := context.Background()
			if snap, err := c.Collect(ctx, targets); err != nil || snap.Errors != 0 {
				b.Fatalf("collect: %v, %d errors", err, snap.Errors)
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				if bc.walk {
					cc.du = newDUCache(0) // walk every directory every cycle
				}
				if _, err := c.Collect(ctx, targets); err != nil {
					b.Fatal(err)
				}
			}
			perCycle := (cpuTime() - cpu0) / time.Duration(b.N)
			b.ReportMetric(float64(perCycle.Microseconds())/1000, "cpu-ms/cycle")
			b.ReportMetric(100*perCycle.Seconds()/10, "%core@10s")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchTree writes pods×containers cgroups (and their pods') under root in
// the v1 or v2 layout, with a writable layer of 20 files and a volume of
// 20 files per container, and returns the targets.
func benchTree(b *testing.B, root, v string, pods, containers int) Targets {
	data := filepath.Join(root, "data")
	t := Targets{NodeName: "bench", DataDir: root, StartTime: time.Now()}
	write := func(dir string, files map[string]string) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	cgroup := func(cg string) {
		if v == "v2" {
			write(filepath.Join(root, "cg", cg), map[string]string{
				"cpu.stat":       "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 50\nnr_throttled 5\nthrottled_usec 700000\n",
				"memory.stat":    strings.Repeat("anon 62914560\nfile 41943040\ninactive_file 10485760\npgfault 77\npgmajfault 3\n", 1) + v2MemoryStatTail,
				"memory.current": "104857600\n", "memory.max": "max\n", "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
				"pids.current": "3\n", "pids.max": "max\n",
			})
			return
		}
		write(filepath.Join(root, "cg", "memory", cg), map[string]string{
			"memory.stat":           v1MemoryStat,
			"memory.usage_in_bytes": "104857600\n", "memory.max_usage_in_bytes": "125829120\n", "memory.failcnt": "0\n",
			"memory.limit_in_bytes": "9223372036854771712\n", "memory.use_hierarchy": "1\n",
			"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
		})
		write(filepath.Join(root, "cg", "cpu", cg), map[string]string{"cpu.stat": "nr_periods 50\nnr_throttled 5\nthrottled_time 700000000\n"})
		write(filepath.Join(root, "cg", "cpuacct", cg), map[string]string{
			"cpuacct.usage": "3000000000\n", "cpuacct.stat": "user 200\nsystem 100\n",
			"cpuacct.usage_percpu": "2000000000 1000000000 \n",
			"cpuacct.usage_all":    "cpu user system\n0 1500000000 500000000\n1 500000000 500000000\n",
		})
		write(filepath.Join(root, "cg", "pids", cg), map[string]string{"pids.current": "3\n", "pids.max": "max\n"})
	}
	if v == "v2" {
		write(filepath.Join(root, "cg"), map[string]string{"cgroup.controllers": "cpu memory pids\n"})
	}
	files := map[string]string{}
	for i := 0; i < 20; i++ {
		files[fmt.Sprintf("f%d", i)] = strings.Repeat("x", 4096)
	}
	for p := 0; p < pods; p++ {
		uid := fmt.Sprintf("uid-%d", p)
		pt := PodTarget{Namespace: "bench", Name: fmt.Sprintf("pod-%d", p), UID: uid, StartTime: time.Now(),
			Cgroup: "/skiff/kubepods/burstable/pod" + uid, NetPID: os.Getpid()}
		cgroup(pt.Cgroup)
		for c := 0; c < containers; c++ {
			id := fmt.Sprintf("%s-c%d", uid, c)
			ct := ContainerTarget{Name: fmt.Sprintf("c%d", c), ID: id, StartTime: time.Now(), Cgroup: pt.Cgroup + "/" + id,
				WritableLayer: filepath.Join(data, "containers", id, "upper"), LogDir: filepath.Join(data, "pods", uid, ct0(c))}
			cgroup(ct.Cgroup)
			write(ct.WritableLayer, files)
			write(ct.LogDir, map[string]string{"0.log": "log line\n"})
			pt.Containers = append(pt.Containers, ct)
			vol := filepath.Join(data, "volumes", id)
			write(vol, files)
			pt.Volumes = append(pt.Volumes, VolumeTarget{Name: "v" + ct0(c), Dir: vol})
		}
		t.Pods = append(t.Pods, pt)
	}
	return t
}

func ct0(c int) string { return fmt.Sprintf("c%d", c) }

const v1MemoryStat = `cache 41943040
rss 62914560
rss_huge 0
shmem 0
mapped_file 0
dirty 0
writeback 0
pgpgin 1000
pgpgout 500
pgfault 77
pgmajfault 3
inactive_anon 0
active_anon 62914560
inactive_file 10485760
active_file 31457280
unevictable 0
hierarchical_memory_limit 9223372036854771712
total_cache 41943040
total_rss 62914560
total_rss_huge 0
total_shmem 0
total_mapped_file 0
total_dirty 0
total_writeback 0
total_pgpgin 1000
total_pgpgout 500
total_pgfault 77
total_pgmajfault 3
total_inactive_anon 0
total_active_anon 62914560
total_inactive_file 10485760
total_active_file 31457280
total_unevictable 0
`

const v2MemoryStatTail = `kernel 1048576
kernel_stack 16384
pagetables 65536
sec_pagetables 0
percpu 0
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 0
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 0
active_anon 62914560
active_file 31457280
unevictable 0
slab_reclaimable 0
slab_unreclaimable 0
slab 0
workingset_refault_anon 0
workingset_refault_file 0
workingset_activate_anon 0
workingset_activate_file 0
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 0
pgscan 0
pgsteal 0
pgscan_kswapd 0
pgscan_direct 0
pgsteal_kswapd 0
pgsteal_direct 0
pgrefill 0
pgactivate 0
pgdeactivate 0
pglazyfree 0
pglazyfreed 0
thp_fault_alloc 0
thp_collapse_alloc 0
`

// BenchmarkCollectHostCgroups is BenchmarkCollect100Containers on the
// host's cgroupfs (root only): 150 empty cgroups made under every
// hierarchy the collector reads, so the kernel formats each file as it
// does for a container's, and removed afterwards.
func BenchmarkCollectHostCgroups(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("making cgroups needs root")
	}
	c, err := NewCgroupCollector(CgroupConfig{Logger: testLoggerQuiet()})
	if err != nil {
		b.Fatal(err)
	}
	cc := c.(*cgroupCollector)
	var dirs []string // hierarchy roots to make the cgroups under
	if cc.cg.v2 {
		dirs = []string{cc.cg.root}
	} else {
		for _, mnt := range cc.cg.v1Mounts {
			dirs = append(dirs, mnt)
		}
	}
	base := fmt.Sprintf("/skiff-stats-bench-%d", os.Getpid())
	var made []string
	b.Cleanup(func() {
		for i := len(made) - 1; i >= 0; i-- {
			if err := os.Remove(made[i]); err != nil {
				b.Logf("cgroup left: %v", err)
			}
		}
	})
	mk := func(cg string) {
		for _, d := range dirs {
			p := filepath.Join(d, cg)
			if err := os.Mkdir(p, 0o755); err != nil {
				if os.IsExist(err) {
					continue
				}
				b.Fatal(err)
			}
			made = append(made, p)
		}
	}
	mk(base)
	data := b.TempDir()
	t := Targets{NodeName: "bench", DataDir: data, StartTime: time.Now()}
	files := map[string][]byte{}
	for i := 0; i < 20; i++ {
		files[fmt.Sprintf("f%d", i)] = make([]byte, 4096)
	}
	write := func(dir string) string {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for n, content := range files {
			if err := os.WriteFile(filepath.Join(dir, n), content, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		return dir
	}
	for p := 0; p < 50; p++ {
		pt := PodTarget{Namespace: "bench", Name: fmt.Sprintf("pod-%d", p), UID: fmt.Sprint(p), Cgroup: fmt.Sprintf("%s/pod%d", base, p), NetPID: os.Getpid()}
		mk(pt.Cgroup)
		for k := 0; k < 2; k++ {
			ct := ContainerTarget{Name: ct0(k), ID: fmt.Sprintf("%d-%d", p, k), Cgroup: fmt.Sprintf("%s/c%d", pt.Cgroup, k),
				WritableLayer: write(filepath.Join(data, "upper", fmt.Sprintf("%d-%d", p, k)))}
			mk(ct.Cgroup)
			pt.Containers = append(pt.Containers, ct)
			pt.Volumes = append(pt.Volumes, VolumeTarget{Name: ct0(k), Dir: write(filepath.Join(data, "vol", fmt.Sprintf("%d-%d", p, k)))})
		}
		t.Pods = append(t.Pods, pt)
	}
	ctx := context.Background()
	if snap, err := c.Collect(ctx, t); err != nil || snap.Errors != 0 {
		b.Fatalf("collect: %v, %+v", err, snap)
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		cc.du = newDUCache(0)
		if _, err := c.Collect(ctx, t); err != nil {
			b.Fatal(err)
		}
	}
	perCycle := (cpuTime() - cpu0) / time.Duration(b.N)
	b.ReportMetric(float64(perCycle.Microseconds())/1000, "cpu-ms/cycle")
	b.ReportMetric(100*perCycle.Seconds()/10, "%core@10s")
}
