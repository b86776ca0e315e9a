package pki

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func TestWriteKubeconfig(t *testing.T) {
	ca := newTestCA(t)
	user := issueClient(t, ca, "admin", "system:masters")
	path := filepath.Join(t.TempDir(), "kubeconfig")
	// A file left with a wider mode must end up 0600.
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteKubeconfig(path, "https://10.0.0.1:6443", ca.CertPEM, user.cert, user.key); err != nil {
		t.Fatalf("WriteKubeconfig: %v", err)
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Fatalf("mode = %o, want 600", m)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatalf("LoadFromFile: %v", err)
	}
	if cfg.CurrentContext != "skiff" {
		t.Fatalf("current-context = %q", cfg.CurrentContext)
	}
	kctx := cfg.Contexts["skiff"]
	if kctx == nil || kctx.Cluster != "skiff" || kctx.AuthInfo != "skiff" {
		t.Fatalf("context = %+v", kctx)
	}
	cluster := cfg.Clusters["skiff"]
	if cluster == nil || cluster.Server != "https://10.0.0.1:6443" || !bytes.Equal(cluster.CertificateAuthorityData, ca.CertPEM) {
		t.Fatalf("cluster = %+v", cluster)
	}
	ai := cfg.AuthInfos["skiff"]
	if ai == nil || !bytes.Equal(ai.ClientCertificateData, user.cert) || !bytes.Equal(ai.ClientKeyData, user.key) {
		t.Fatal("user credentials differ")
	}
}

// TestKubeconfigReachesServer uses the written kubeconfig the way kubectl
// does, against a server configured with ServerTLSConfig.
func TestKubeconfigReachesServer(t *testing.T) {
	ca := newTestCA(t)
	m1 := issueServer(t, ca, "m1")
	tlsCfg, err := ServerTLSConfig(ca.Pool(), m1.cert, m1.key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, r.TLS.VerifiedChains[0][0].Subject.CommonName)
	}))
	srv.TLS = tlsCfg
	srv.StartTLS()
	t.Cleanup(srv.Close)

	user := issueClient(t, ca, "admin", "system:masters")
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := WriteKubeconfig(path, srv.URL, ca.CertPEM, user.cert, user.key); err != nil {
		t.Fatal(err)
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("BuildConfigFromFlags: %v", err)
	}
	hc, err := rest.HTTPClientFor(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(srv.URL + "/whoami")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != "admin" {
		t.Fatalf("got %d %q, want 200 admin", resp.StatusCode, body)
	}
}
