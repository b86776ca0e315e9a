package main

import (
	"strings"
	"testing"

	"github.com/prometheus/common/model"
)

func TestSparkline(t *testing.T) {
	if got := sparkline([]float64{0, 1, 2, 3, 4, 5, 6, 7}); got != "▁▂▃▄▅▆▇█" {
		t.Fatalf("ramp: %q", got)
	}
	if got := sparkline([]float64{3, 3, 3}); got != "▁▁▁" {
		t.Fatalf("flat: %q", got)
	}
}

func TestPrintValueRange(t *testing.T) {
	m := model.Matrix{{
		Metric: model.Metric{"__name__": "up", "job": "kubelet"},
		Values: []model.SamplePair{{Timestamp: 0, Value: 0}, {Timestamp: 1000, Value: 1}},
	}}
	var b strings.Builder
	if err := printValue(&b, m, true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, `up{job="kubelet"}`) || !strings.Contains(out, "▁█") || !strings.HasPrefix(out, "SERIES") {
		t.Fatalf("table:\n%s", out)
	}
}
