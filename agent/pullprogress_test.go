package agent

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/runtime/image"
)

// The image store's download progress becomes Pulling events on the pod,
// spaced out, with the bytes fetched so far.
func TestPullProgressEvents(t *testing.T) {
	h := newHarness(t)
	p := pod("progress", corev1.RestartPolicyAlways, ctr("main"))
	h.createPod(p)
	// Let the pod settle first, so that the agent is idle when the test
	// ends and cleans up its directories.
	got := h.waitPod("progress", "running", phaseIs(corev1.PodRunning))
	report := h.a.pullProgress(got, "main", "example.com/app:1")
	report(image.Progress{Phase: "resolving"})
	report(image.Progress{Phase: "downloading", Done: 12_300_000, Total: 40_100_000})
	// Within the interval: no second event.
	report(image.Progress{Phase: "downloading", Done: 20_000_000, Total: 40_100_000})
	want := `Pulling image "example.com/app:1": 12.3 MB of 40.1 MB`
	h.waitFor("progress event", func() error {
		n := 0
		for _, e := range h.events("progress") {
			if e.Reason == "Pulling" && strings.Contains(e.Message, " MB of ") {
				if e.Message != want {
					return fmt.Errorf("message %q, want %q", e.Message, want)
				}
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%d progress events", n)
		}
		return nil
	})
}
