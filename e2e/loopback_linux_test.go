package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestPodReachesLoopbackMaster: the `make run` setup, a master whose API
// is advertised on 127.0.0.1 (so the kubernetes Service's endpoint is
// 127.0.0.1:6443), with its embedded agent. A pod reaches the API at
// https://kubernetes.default.svc (the cluster IP 10.43.0.1:443), verified
// against the cluster CA. Before, the DNAT to 127.0.0.1 was dropped as
// martian and every in-cluster client timed out.
func TestPodReachesLoopbackMaster(t *testing.T) {
	needRealContainers(t)
	c := testutil.NewNetCluster(t, testutil.NetClusterOptions{Nodes: 1, ImageArchives: []string{netImageArchive(t)}, LoopbackAPI: true})
	eps, err := c.Kubectl("get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}")
	if err != nil || eps != "127.0.0.1" {
		t.Fatalf("kubernetes endpoints: %q, %v (want 127.0.0.1: the case under test)", eps, err)
	}
	client := c.RunPod(netPod("client", c.NodeName(0), nil, "exec sleep 3600"))
	caPEM, err := os.ReadFile(filepath.Join(c.Master.DataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	var status string
	err = testutil.Poll(30*time.Second, func() error {
		return c.InPod(client, func() error {
			raw, err := net.DialTimeout("tcp4", "10.43.0.1:443", 2*time.Second)
			if err != nil {
				return err
			}
			conn := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "kubernetes.default.svc"})
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if err := conn.Handshake(); err != nil {
				return fmt.Errorf("TLS: %w", err)
			}
			if _, err := fmt.Fprint(conn, "GET /version HTTP/1.1\r\nHost: kubernetes.default.svc\r\nConnection: close\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return err
			}
			resp.Body.Close()
			status = resp.Status
			return nil
		})
	})
	if err != nil {
		t.Fatalf("https://kubernetes.default.svc from a pod: %v\n--- node log ---\n%s", err, c.NodeLog(0, 30))
	}
	t.Logf("GET https://kubernetes.default.svc/version from a pod: %s", status)
}
