package libcontainer

import (
	"context"
	"sort"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// BenchmarkContainerStart measures RunPodSandbox + CreateContainer +
// StartContainer until the container runs (image present, bridge network),
// and reports p50 and p99.
func BenchmarkContainerStart(b *testing.B) {
	n := newNode(b)
	ctx := context.Background()
	var lat, sbLat, createLat, startLat []time.Duration
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
}

func percentileMS(d []time.Duration, p int) float64 {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return float64(d[(len(d)*p)/100].Microseconds()) / 1000
}
