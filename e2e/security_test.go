package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestJoinSecurity: a joiner checks the CA hash before it sends the secret,
// a wrong secret is refused, and the files a master writes are private.
func TestJoinSecurity(t *testing.T) {
	first := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1"})
	first.Start()
	first.WaitReady(30 * time.Second)
	token := first.Token()
	if !strings.HasPrefix(token, "K10") || !strings.Contains(token, "::server:") {
		t.Fatalf("token %q is not of the K10<hash>::server:<secret> form", token)
	}
	for _, f := range []string{"token", "kubeconfig.yaml", "tls/ca.key", "tls/server.key"} {
		st, err := os.Stat(filepath.Join(first.DataDir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group/other access", f, st.Mode().Perm())
		}
	}

	// A token whose CA hash does not match: the joiner refuses before
	// sending the secret, and exits with a clear error.
	secret := token[strings.Index(token, "::server:")+len("::server:"):]
	badHash := "K10" + strings.Repeat("0", 64) + "::server:" + secret
	bad := testutil.NewMaster(t, testutil.MasterOptions{Name: "bad-ca", Join: first.URL(), Token: badHash})
	bad.Start()
	testutil.WaitFor(t, 20*time.Second, "joiner with a wrong CA hash to exit", func() error {
		if strings.Contains(bad.LogTail(20), "does not match") {
			return nil
		}
		return fmt.Errorf("log: %s", bad.LogTail(5))
	})
	bad.Kill()

	// The right CA hash but a wrong secret: refused with 401.
	caPEM, err := os.ReadFile(filepath.Join(first.DataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodPost, first.URL()+"/internal/v1/bootstrap", nil)
	req.Header.Set("Authorization", "Bearer wrong-secret")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bootstrap with a wrong secret: %d, want 401", resp.StatusCode)
	}
	// No credentials at all: the API refuses resource requests.
	resp, err = hc.Get(first.URL() + "/api/v1/namespaces/default/configmaps")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous list: %d, want 401 or 403", resp.StatusCode)
	}

	// The Raft port speaks only mutual TLS with master certificates: a
	// client without a certificate fails the handshake.
	conn, err := tls.Dial("tcp", first.IP+":6444", &tls.Config{RootCAs: pool, ServerName: first.IP})
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatalf("raft port accepted a client without a certificate")
	}

	// The admin kubeconfig works with the real kubectl.
	if _, err := os.Stat("/usr/bin/kubectl"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := kubectl(ctx, first.Kubeconfig(), "get", "--raw", "/readyz")
		if err != nil || strings.TrimSpace(out) != "ok" {
			t.Fatalf("kubectl get --raw /readyz: %v %s", err, out)
		}
	}
}
