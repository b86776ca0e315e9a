package scheduler

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// BenchmarkSchedule measures the scheduling algorithm alone (snapshot
// update, filters, scores, assume) with no API: pods per second one
// scheduler goroutine places on 1,000 and 5,000 nodes of 4 CPUs, as the
// end-to-end benchmark's pods (100m CPU, 500Mi).
func BenchmarkSchedule(b *testing.B) {
	for _, nodes := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			cache := NewCache(0, nil)
			for i := 0; i < nodes; i++ {
				cache.AddNode(node(fmt.Sprintf("n%05d", i), alloc("4", "16Gi", "110"),
					nodeLabels(corev1.LabelTopologyZone, fmt.Sprintf("zone-%d", i%5))))
			}
			snap := NewSnapshot()
			a := newAlgorithm(NewDefaultFramework(nil, 0), 0)
			pods := make([]*corev1.Pod, b.N)
			for i := range pods {
				pods[i] = pod(fmt.Sprintf("p%d", i), requests("100m", "500Mi"))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cache.UpdateSnapshot(snap)
				pi := info(pods[i])
				res, err := a.schedule(context.Background(), NewCycleState(), pi, snap)
				if err != nil {
					b.Fatal(err)
				}
				shallow := *pods[i]
				shallow.Spec.NodeName = res.Node
				ai := *pi
				ai.Pod = &shallow
				cache.AssumePod(&ai, res.Node)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pods/s")
		})
	}
}
