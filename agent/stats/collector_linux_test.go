package stats

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
)

// writeFiles writes name→content files under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	podCg = "/skiff/kubepods/burstable/podaaa"
	ctrCg = podCg + "/c1"
)

// v1Tree is a cgroup v1 fixture: one hierarchy per subsystem, as a host
// mounts them, holding a pod and its container.
func v1Tree(t *testing.T) string {
	root := t.TempDir()
	for cg, scale := range map[string]uint64{podCg: 2, ctrCg: 1} {
		writeFiles(t, filepath.Join(root, "memory", cg), map[string]string{
			"memory.stat": strings.Join([]string{
				"cache 1000", "rss 2000", "total_cache " + u(scale*40<<20), "total_rss " + u(scale*60<<20),
				"total_inactive_file " + u(scale*10<<20), "total_pgfault 77", "total_pgmajfault 3",
			}, "\n") + "\n",
			"memory.usage_in_bytes":     u(scale*100<<20) + "\n",
			"memory.max_usage_in_bytes": u(scale*120<<20) + "\n",
			"memory.failcnt":            "0\n",
			"memory.limit_in_bytes":     u(scale*256<<20) + "\n",
			"memory.use_hierarchy":      "1\n",
			"memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill " + u(scale) + "\n",
		})
		writeFiles(t, filepath.Join(root, "cpu", cg), map[string]string{
			"cpu.stat": "nr_periods " + u(scale*50) + "\nnr_throttled " + u(scale*5) + "\nthrottled_time " + u(scale*7e8) + "\n",
		})
		writeFiles(t, filepath.Join(root, "cpuacct", cg), map[string]string{
			"cpuacct.usage":        u(scale*3e9) + "\n",
			"cpuacct.stat":         "user " + u(scale*200) + "\nsystem " + u(scale*100) + "\n",
			"cpuacct.usage_percpu": u(scale*2e9) + " " + u(scale*1e9) + " \n",
			"cpuacct.usage_all":    "cpu user system\n0 " + u(scale*15e8) + " " + u(scale*5e8) + "\n1 " + u(scale*5e8) + " " + u(scale*5e8) + "\n",
		})
		writeFiles(t, filepath.Join(root, "pids", cg), map[string]string{"pids.current": u(scale*3) + "\n", "pids.max": "max\n"})
	}
	return root
}

// v2Tree is a cgroup v2 (unified) fixture with the same figures.
func v2Tree(t *testing.T) string {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"cgroup.controllers": "cpu memory pids\n"})
	for cg, scale := range map[string]uint64{podCg: 2, ctrCg: 1} {
		writeFiles(t, filepath.Join(root, cg), map[string]string{
			"cpu.stat": "usage_usec " + u(scale*3e6) + "\nuser_usec " + u(scale*2e6) + "\nsystem_usec " + u(scale*1e6) +
				"\nnr_periods " + u(scale*50) + "\nnr_throttled " + u(scale*5) + "\nthrottled_usec " + u(scale*7e5) + "\n",
			"memory.stat": strings.Join([]string{
				"anon " + u(scale*60<<20), "file " + u(scale*40<<20), "inactive_file " + u(scale*10<<20), "pgfault 77", "pgmajfault 3",
			}, "\n") + "\n",
			"memory.current": u(scale*100<<20) + "\n",
			"memory.max":     u(scale*256<<20) + "\n",
			"memory.events":  "low 0\nhigh 0\nmax 4\noom 2\noom_kill " + u(scale) + "\n",
			"pids.current":   u(scale*3) + "\n",
			"pids.max":       "max\n",
		})
	}
	return root
}

func u(v uint64) string { return strconvU(v) }

func TestCgroupCollectorFixtures(t *testing.T) {
	for _, tc := range []struct {
		name string
		root string
		v    int
	}{{"v1", v1Tree(t), 1}, {"v2", v2Tree(t), 2}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCgroupCollector(CgroupConfig{CgroupRoot: tc.root, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.(*cgroupCollector).cg.version(); got != tc.v {
				t.Fatalf("cgroup version %d, want %d", got, tc.v)
			}
			layer := t.TempDir()
			if err := os.WriteFile(filepath.Join(layer, "f"), make([]byte, 64<<10), 0o644); err != nil {
				t.Fatal(err)
			}
			vol := t.TempDir()
			if err := os.WriteFile(filepath.Join(vol, "data"), make([]byte, 1<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			targets := Targets{NodeName: "n1", DataDir: t.TempDir(), StartTime: time.Now(), Pods: []PodTarget{{
				Namespace: "ns", Name: "p", UID: "aaa", Cgroup: podCg, NetPID: os.Getpid(),
				Containers: []ContainerTarget{{Name: "c", ID: "c1", Cgroup: ctrCg, WritableLayer: layer}},
				Volumes:    []VolumeTarget{{Name: "data", Dir: vol, ClaimNamespace: "ns", ClaimName: "claim"}},
			}}}
			snap, err := c.Collect(context.Background(), targets)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Errors != 0 {
				t.Fatalf("%d target errors", snap.Errors)
			}
			if len(snap.Pods) != 1 || len(snap.Pods[0].Containers) != 1 {
				t.Fatalf("pods %+v", snap.Pods)
			}
			p, ct := snap.Pods[0], snap.Pods[0].Containers[0]
			checks := []struct {
				what      string
				got, want uint64
			}{
				{"container cpu ns", ct.CPU.UsageNanoSeconds, 3e9},
				{"pod cpu ns", p.CPU.UsageNanoSeconds, 6e9},
				{"container throttled periods", ct.CPU.ThrottledPeriods, 5},
				{"container periods", ct.CPU.Periods, 50},
				{"container throttled ns", ct.CPU.ThrottledNanoSeconds, 7e8},
				{"container usage", ct.Memory.Usage, 100 << 20},
				{"container working set", ct.Memory.WorkingSet, 90 << 20},
				{"pod working set", p.Memory.WorkingSet, 180 << 20},
				{"container rss", ct.Memory.RSS, 60 << 20},
				{"container cache", ct.Memory.Cache, 40 << 20},
				{"container oom kills", ct.Memory.OOMKills, 1},
				{"container available", ct.Memory.Available, 166 << 20},
				{"container limit", ct.MemoryLimit, 256 << 20},
				{"container processes", ct.Processes, 3},
				{"pod processes", p.Processes, 6},
				{"page faults", ct.Memory.PageFaults, 77},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
				}
			}
			if ct.Rootfs.Used < 64<<10 || ct.Rootfs.InodesUsed != 2 {
				t.Errorf("rootfs used %d inodes %d, want >= 64KiB and 2", ct.Rootfs.Used, ct.Rootfs.InodesUsed)
			}
			if len(p.Volumes) != 1 || p.Volumes[0].Used < 1<<20 || p.Volumes[0].Capacity == 0 || p.Volumes[0].ClaimName != "claim" {
				t.Errorf("volumes %+v", p.Volumes)
			}
			if snap.Node.Memory.WorkingSet == 0 || snap.Node.CPU.UsageNanoSeconds == 0 || snap.Node.Fs.Capacity == 0 || snap.Node.NumCPUs == 0 {
				t.Errorf("node %+v", snap.Node)
			}
		})
	}
}

// A container whose cgroup is gone (exited between listing and reading)
// is left out without counting as an error.
func TestCgroupCollectorGoneContainer(t *testing.T) {
	root := v2Tree(t)
	c, err := NewCgroupCollector(CgroupConfig{CgroupRoot: root, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := c.Collect(context.Background(), Targets{NodeName: "n", Pods: []PodTarget{{
		UID: "aaa", Cgroup: podCg, Containers: []ContainerTarget{{Name: "gone", ID: "x", Cgroup: podCg + "/gone"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Errors != 0 || len(snap.Pods[0].Containers) != 0 {
		t.Fatalf("errors %d, containers %+v", snap.Errors, snap.Pods[0].Containers)
	}
}

// A directory is walked again only when its refresh is due.
func TestDUCacheRefresh(t *testing.T) {
	dir := t.TempDir()
	c := newDUCache(time.Minute)
	now := time.Now()
	used1, _, _, err := c.usage(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	used2, _, _, _ := c.usage(dir, now.Add(30*time.Second))
	if used2 != used1 {
		t.Fatalf("walked again before due: %d -> %d", used1, used2)
	}
	used3, inodes, _, _ := c.usage(dir, now.Add(61*time.Second))
	if used3 < used1+1<<20 || inodes != 2 {
		t.Fatalf("after refresh used %d inodes %d", used3, inodes)
	}
	if _, _, _, err := c.usage(filepath.Join(dir, "missing"), now); err == nil {
		t.Fatal("missing directory: no error")
	}
}

func strconvU(v uint64) string { return strconv.FormatUint(v, 10) }

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestMain(m *testing.M) {
	// The fixtures are plain files: let the cgroup library read them
	// (it checks for cgroupfs otherwise), as its own tests do.
	cgroups.TestMode = true
	os.Exit(m.Run())
}

func testLoggerQuiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
