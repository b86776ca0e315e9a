package e2e

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDashboardTerminal: the terminal view execs into a container over a
// WebSocket (v5.channel.k8s.io, the token in the bearer subprotocol: a
// browser cannot send an Authorization header there), shows the
// command's output in xterm.js and its exit status.
func TestDashboardTerminal(t *testing.T) {
	m, cs := fakeNodeMaster(t, "term")
	if _, err := cs.CoreV1().Pods("default").Create(context.Background(), fakePod("web", m.Name, corev1.RestartPolicyAlways), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodPhase(t, cs, "default", "web", corev1.PodRunning)
	_, token := dashboardToken(t, m, "cluster-admin")

	ctx := tab(t, newBrowser(t))
	login(t, ctx, m.URL(), "/ui/terminal/default/web?command=echo+hello+from+the+terminal", token)
	waitText(t, ctx, "#terminal .xterm-rows", "hello from the terminal")
	waitText(t, ctx, "#term-status", "exited with status 0")
	screenshot(t, ctx, "terminal")
}
