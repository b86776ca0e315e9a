package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestNodePortLoopbackAndHairpin (issue 17): a NodePort Service answers on
// 127.0.0.1 inside each node's network namespace (as kube-proxy makes it,
// so that `make run` serves node ports on the host's loopback), the
// endpoint on this node or on the other one, and a pod reaches itself
// through its own Service's cluster IP (hairpin). Both failed before: the
// loopback packet DNATed to the other node was dropped as martian, and
// the bridge never sent the hairpin frame back out of the port it came in
// by.
func TestNodePortLoopbackAndHairpin(t *testing.T) {
	needRealContainers(t)
	c := testutil.NewNetCluster(t, testutil.NetClusterOptions{Nodes: 2, ImageArchives: []string{netImageArchive(t)}})
	ctx := context.Background()
	web := c.RunPod(webPod("web-0", c.NodeName(1)))
	svc, err := c.CS.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	diag := func() string {
		b, _ := os.ReadFile(filepath.Join(c.Master.DataDir, "agent", "proxy", "state.txt"))
		return "--- proxy state ---\n" + string(b) + "\n--- node-0 log ---\n" + c.NodeLog(0, 30)
	}
	// The way by the node's own address works already: the rules are in.
	np := fmt.Sprint(svc.Spec.Ports[0].NodePort)
	testutil.WaitFor(t, 30*time.Second, "node port on the node address", func() error {
		return c.InNode(0, func() error { _, err := httpGet(net.JoinHostPort(c.NodeIP(0), np)); return err })
	})
	for node := range 2 {
		for _, addr := range []string{"127.0.0.1", "127.0.0.2"} {
			var body string
			err := testutil.Poll(20*time.Second, func() error {
				return c.InNode(node, func() (err error) { body, err = httpGet(net.JoinHostPort(addr, np)); return })
			})
			if err != nil || body != "web-0" {
				t.Fatalf("node port on %s of node-%d: %q, %v\n%s", addr, node, body, err, diag())
			}
		}
	}
	// Hairpin: web-0 asks its own Service.
	vip := net.JoinHostPort(svc.Spec.ClusterIP, "80")
	var body string
	err = testutil.Poll(20*time.Second, func() error {
		return c.InPod(web, func() (err error) { body, err = httpGet(vip); return })
	})
	if err != nil || body != "web-0" {
		t.Fatalf("web-0 → its own Service %s: %q, %v\n%s", vip, body, err, diag())
	}
}
