package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestDashboardLogs: the logs view tails a pod's log live. The hollow
// container prints "tick N" every 300 ms; a tick newer than the ones shown
// when the view opened appears without a reload, the stream is still
// open, and the timestamps toggle asks the API for timestamps (a new URL).
func TestDashboardLogs(t *testing.T) {
	m, cs := fakeNodeMaster(t, "logs")
	pod := fakePod("counter", m.Name, corev1.RestartPolicyAlways, "log=hello from counter", "tick=300ms")
	if _, err := cs.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodPhase(t, cs, "default", "counter", corev1.PodRunning)
	_, token := dashboardToken(t, m, "view")

	ctx := tab(t, newBrowser(t))
	login(t, ctx, m.URL(), "/ui/logs/default/counter", token)
	waitText(t, ctx, "#log", "hello from counter", "tick 2")
	if got := waitText(t, ctx, "#log-container option", "main"); got != "main" {
		t.Errorf("container switcher offers %q, want main", got)
	}
	lastTick := func() (int, error) {
		text, err := evaluate[string](ctx, "document.querySelector('#log').textContent")
		if err != nil {
			return 0, err
		}
		i := strings.LastIndex(text, "tick ")
		if i < 0 {
			return 0, fmt.Errorf("no tick in %q", text)
		}
		n, _, _ := strings.Cut(text[i+len("tick "):], "\n")
		return strconv.Atoi(n)
	}
	first, err := lastTick()
	if err != nil {
		t.Fatal(err)
	}
	// No reload: a marker set on the page survives while new lines come.
	if _, err := evaluate[bool](ctx, "window.skiffMarker = true"); err != nil {
		t.Fatal(err)
	}
	err = testutil.Poll(20*time.Second, func() error {
		n, err := lastTick()
		if err != nil {
			return err
		}
		if n < first+3 {
			return fmt.Errorf("last tick %d, want at least %d", n, first+3)
		}
		return nil
	})
	if err != nil {
		screenshot(t, ctx, "failed")
		t.Fatal(err)
	}
	if marked, err := evaluate[bool](ctx, "window.skiffMarker === true"); err != nil || !marked {
		t.Errorf("the page was reloaded (marker %v, %v)", marked, err)
	}
	if state, err := evaluate[string](ctx, "document.querySelector('#log').dataset.state"); err != nil || state != "streaming" {
		t.Errorf("log state %q (%v), want streaming", state, err)
	}
	screenshot(t, ctx, "logs")

	// The timestamps toggle: lines start with an RFC 3339 time.
	run(t, ctx, "timestamps", chromedp.Click(chromedp.CSS("#log-timestamps")))
	err = testutil.Poll(20*time.Second, func() error {
		text, err := evaluate[string](ctx, "document.querySelector('#log').textContent")
		if err != nil {
			return err
		}
		if !strings.HasPrefix(text, time.Now().UTC().Format("2006-01-02T")) || !strings.Contains(text, "hello from counter") {
			return fmt.Errorf("with timestamps the log is %q", text[:min(len(text), 80)])
		}
		return nil
	})
	if err != nil {
		screenshot(t, ctx, "failed")
		t.Fatal(err)
	}
	screenshot(t, ctx, "timestamps")
}
