package libcontainer

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// BenchmarkContainerStart measures RunPodSandbox + CreateContainer +
// StartContainer until the container runs (image present, bridge network),
// and reports p50 and p99, and per start the CPU time of the shim and the
// container's init (until the container runs) and the shim's private RSS.
// Shims run the small skiff-shim binary; SKIFF_BENCH_SHIM_BINARY=path
// (e.g. bin/skiff) measures another one.
func BenchmarkContainerStart(b *testing.B) {
	n := newNode(b)
	if p := os.Getenv("SKIFF_BENCH_SHIM_BINARY"); p != "" {
		n.binary = p
		n.rt = n.newRuntime()
	}
	ctx := context.Background()
	var lat, sbLat, createLat, startLat, cpu []time.Duration
	var rss, dirty []int
	for b.Loop() {
		start := time.Now()
		cfg := podConfig("bench")
		sb, err := n.rt.RunPodSandbox(ctx, cfg, "")
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		id, err := n.rt.CreateContainer(ctx, sb, ctrConfig("app", 0, "sleep", "1000"), cfg)
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := n.rt.StartContainer(ctx, id); err != nil {
			b.Fatal(err)
		}
		sbLat, createLat, startLat = append(sbLat, t1.Sub(start)), append(createLat, t2.Sub(t1)), append(startLat, time.Since(t2))
		st, err := n.rt.ContainerStatus(ctx, id, false)
		if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			b.Fatalf("not running: %v %v", st, err)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		if vst, err := n.rt.ContainerStatus(ctx, id, true); err == nil {
			cpu = append(cpu, procCPU(b, vst.Info["shimPid"])+procCPU(b, vst.Info["pid"]))
			r, d := memKiB(b, vst.Info["shimPid"])
			rss, dirty = append(rss, r), append(dirty, d)
		}
		if err := n.rt.RemovePodSandbox(ctx, sb); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(percentileMS(lat, 50), "p50-ms")
	b.ReportMetric(percentileMS(lat, 99), "p99-ms")
	b.ReportMetric(percentileMS(sbLat, 50), "sandbox-p50-ms")
	b.ReportMetric(percentileMS(createLat, 50), "create-p50-ms")
	b.ReportMetric(percentileMS(startLat, 50), "start-p50-ms")
	if len(cpu) > 0 {
		var sum time.Duration
		for _, c := range cpu {
			sum += c
		}
		b.ReportMetric(float64(sum.Microseconds())/1000/float64(len(cpu)), "shim+init-cpu-ms")
		sort.Ints(rss)
		sort.Ints(dirty)
		b.ReportMetric(float64(rss[len(rss)/2]), "shim-rss-KiB")
		b.ReportMetric(float64(dirty[len(dirty)/2]), "shim-private-dirty-KiB")
	}
}

// procCPU is the user+system CPU time process pid has used.
func procCPU(b *testing.B, pid string) time.Duration {
	st, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
	ut, _ := strconv.Atoi(f[11]) // utime and stime, fields 14 and 15
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(ut+stime) * 10 * time.Millisecond // USER_HZ 100
}

// memKiB is process pid's resident memory and its private dirty part (the
// memory the process alone holds, whatever else maps its binary; the
// clean pages of the binary count as private only while no other process
// maps them).
func memKiB(b *testing.B, pid string) (rss, dirty int) {
	sm, err := os.ReadFile("/proc/" + pid + "/smaps_rollup")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(sm), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			v, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "Rss:":
				rss = v
			case "Private_Dirty:":
				dirty = v
			}
		}
	}
	return rss, dirty
}

func percentileMS(d []time.Duration, p int) float64 {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return float64(d[(len(d)*p)/100].Microseconds()) / 1000
}
