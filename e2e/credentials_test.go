package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/client"
	"github.com/skiff-io/skiff/e2e/testutil"
	"github.com/skiff-io/skiff/server/pki"
)

// caClient is an HTTP client that trusts m's CA and presents cert, if any.
func caClient(t *testing.T, m *testutil.Master, cert *tls.Certificate) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(m.DataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// call sends method path with an optional bearer token and body and
// returns the status code and body.
func call(t *testing.T, hc *http.Client, method, url, bearer string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// csrPEM is a certificate request for subject (with dnsNames as SANs).
func csrPEM(t *testing.T, subject pkix.Name, dnsNames ...string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, DNSNames: dnsNames}, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func agentSecret(t *testing.T, token string) string {
	t.Helper()
	_, secret, err := pki.ParseToken(token)
	if err != nil || !pki.IsAgentSecret(secret) {
		t.Fatalf("agent token %q: %v", token, err)
	}
	return secret
}

// TestAgentTokenGetsOnlyANodeCredential: the first master writes an agent
// token; with it, every path to the cluster's keys or to another identity
// is refused, and only a node certificate for a key the caller made can be
// had.
func TestAgentTokenGetsOnlyANodeCredential(t *testing.T) {
	ctx := context.Background()
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1"})
	m.Start()
	m.WaitReady(30 * time.Second)
	tok := m.AgentToken()
	if tok == "" || strings.Contains(tok, "::server:") || !strings.HasPrefix(tok, "K10") {
		t.Fatalf("agent token %q: want K10<ca-hash>::<id>.<secret>", tok)
	}
	if st, err := os.Stat(filepath.Join(m.DataDir, "agent-token")); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("agent-token file: %v %v", st, err)
	}
	secret := agentSecret(t, tok)
	id, _, _ := strings.Cut(secret, ".")
	hc := caClient(t, m, nil)
	u := m.URL()

	nodeSubject := func(n string) pkix.Name {
		return pkix.Name{CommonName: "system:node:" + n, Organization: []string{"system:nodes"}}
	}
	csrPath := "/apis/certificates.k8s.io/v1/certificatesigningrequests"
	csrBody := func(signer, request string) []byte {
		usage := certificatesv1.UsageClientAuth
		if signer == pki.SignerKubeletServing {
			usage = certificatesv1.UsageServerAuth
		}
		b, err := json.Marshal(&certificatesv1.CertificateSigningRequest{
			TypeMeta:   metav1.TypeMeta{APIVersion: "certificates.k8s.io/v1", Kind: "CertificateSigningRequest"},
			ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"},
			Spec: certificatesv1.CertificateSigningRequestSpec{Request: []byte(request), SignerName: signer,
				Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, usage}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	masters := pkix.Name{CommonName: "skiff-admin", Organization: []string{"system:masters"}}
	for _, c := range []struct {
		what, method, path string
		body               []byte
	}{
		{"the CA and signing keys", http.MethodPost, "/internal/v1/bootstrap", nil},
		{"joining as a master", http.MethodPost, "/internal/v1/join", []byte(`{"name":"evil","raftAddress":"127.0.0.1:1","apiURL":"https://127.0.0.1:1"}`)},
		{"the members", http.MethodGet, "/internal/v1/members", nil},
		{"the gossip keys", http.MethodGet, "/internal/v1/gossip", nil},
		{"the raft apply path", http.MethodPost, "/internal/v1/apply", []byte("x")},
		{"kube-system secrets", http.MethodGet, "/api/v1/namespaces/kube-system/secrets", nil},
		{"its own token secret", http.MethodGet, "/api/v1/namespaces/kube-system/secrets/bootstrap-token-" + id, nil},
		{"a service-account token", http.MethodPost, "/api/v1/namespaces/kube-system/serviceaccounts/default/token", []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}`)},
		{"approving a request", http.MethodPut, csrPath + "/x/status", []byte(`{}`)},
		{"a system:masters kubelet client certificate", http.MethodPost, csrPath, csrBody(pki.SignerKubeletClient, csrPEM(t, masters))},
		{"a system:masters apiserver client certificate", http.MethodPost, csrPath, csrBody("kubernetes.io/kube-apiserver-client", csrPEM(t, masters))},
		{"a node certificate in system:masters", http.MethodPost, csrPath,
			csrBody(pki.SignerKubeletClient, csrPEM(t, pkix.Name{CommonName: "system:node:probe", Organization: []string{"system:nodes", "system:masters"}}))},
		{"a serving certificate", http.MethodPost, csrPath, csrBody(pki.SignerKubeletServing, csrPEM(t, nodeSubject("probe"), "probe"))},
		{"a server certificate", http.MethodPost, csrPath,
			csrBody(pki.SignerKubeletServing, csrPEM(t, pkix.Name{CommonName: "skiff-server:probe", Organization: []string{"skiff:servers"}}, "probe"))},
		{"a client certificate with names", http.MethodPost, csrPath, csrBody(pki.SignerKubeletClient, csrPEM(t, nodeSubject("probe"), "kubernetes.default"))},
	} {
		code, body := call(t, hc, c.method, u+c.path, secret, c.body)
		if code != http.StatusForbidden && code != http.StatusUnauthorized {
			t.Errorf("agent token asking for %s: %d %s, want 401 or 403", c.what, code, body)
		}
		if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, "CERTIFICATE-----") {
			t.Errorf("agent token asking for %s got key or certificate material: %s", c.what, body)
		}
	}

	// The master's own node: the request is denied, never signed.
	admin := m.Clientset()
	code, body := call(t, hc, http.MethodPost, u+csrPath, secret, csrBody(pki.SignerKubeletClient, csrPEM(t, nodeSubject("m1"))))
	if code != http.StatusCreated {
		t.Fatalf("request for the master's node: %d %s", code, body)
	}
	var created certificatesv1.CertificateSigningRequest
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		t.Fatal(err)
	}
	if created.Spec.Username != "system:bootstrap:"+id {
		t.Errorf("requester %q, want system:bootstrap:%s set by the API server", created.Spec.Username, id)
	}
	testutil.WaitFor(t, 20*time.Second, "the request for the master's node denied", func() error {
		c, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(c.Status.Certificate) > 0 {
			t.Fatalf("the master's node certificate was issued to an agent token")
		}
		for _, cond := range c.Status.Conditions {
			if cond.Type == certificatesv1.CertificateDenied {
				return nil
			}
		}
		return fmt.Errorf("conditions %v", c.Status.Conditions)
	})

	// What it can get: one node's certificates, for keys made here.
	creds, err := client.BootstrapNode(ctx, u, tok, "probe", []string{"127.0.0.1"})
	if err != nil {
		t.Fatalf("node bootstrap with the agent token: %v", err)
	}
	pair, err := tls.X509KeyPair([]byte(creds.ClientCert), []byte(creds.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	if s := pair.Leaf.Subject; s.CommonName != "system:node:probe" || len(s.Organization) != 1 || s.Organization[0] != "system:nodes" {
		t.Fatalf("node certificate subject %v", s)
	}
	// The node certificate opens no path to the keys either, nor to another
	// node's certificates.
	nhc := caClient(t, m, &pair)
	if code, body := call(t, nhc, http.MethodPost, u+"/internal/v1/bootstrap", "", nil); code != http.StatusForbidden {
		t.Errorf("node certificate asking for the keys: %d %s, want 403", code, body)
	}
	if code, body := call(t, nhc, http.MethodPost, u+csrPath, "", csrBody(pki.SignerKubeletClient, csrPEM(t, nodeSubject("other")))); code != http.StatusForbidden {
		t.Errorf("node probe asking for node other's certificate: %d %s, want 403", code, body)
	}
	// Nor a serving certificate for the API's names or a master's address,
	// with which it could pose as a master (auto-denied, never signed).
	for i, names := range [][]string{{"kubernetes.default.svc"}, {"probe", m.IP}} {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.CertificateRequest{Subject: nodeSubject("probe")}
		for _, n := range names {
			if ip := net.ParseIP(n); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, n)
			}
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
		if err != nil {
			t.Fatal(err)
		}
		req := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
		code, body := call(t, nhc, http.MethodPost, u+csrPath, "", csrBody(pki.SignerKubeletServing, req))
		if code != http.StatusCreated {
			t.Fatalf("serving request %d (%v): %d %s", i, names, code, body)
		}
		var sc certificatesv1.CertificateSigningRequest
		if err := json.Unmarshal([]byte(body), &sc); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("the serving request for %v denied", names), func() error {
			c, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, sc.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(c.Status.Certificate) > 0 {
				t.Fatalf("a node got a serving certificate for %v", names)
			}
			for _, cond := range c.Status.Conditions {
				if cond.Type == certificatesv1.CertificateDenied {
					return nil
				}
			}
			return fmt.Errorf("conditions %v", c.Status.Conditions)
		})
	}
	if _, err := admin.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+id, metav1.GetOptions{}); err != nil {
		t.Errorf("the agent token's Secret: %v", err)
	}

	// The server token, as agents set up before agent tokens hold it, gets
	// a node's certificates too, and no key.
	legacy, err := client.BootstrapNode(ctx, u, m.Token(), "legacy", []string{"127.0.0.1"})
	if err != nil {
		t.Fatalf("node bootstrap with the server token: %v", err)
	}
	if err := legacy.Check("legacy"); err != nil {
		t.Errorf("legacy node credentials: %v", err)
	}
}

// TestAgentJoinsWithAgentToken: an agent joins with the agent token, its
// Node becomes Ready, and its data dir holds no private key but its own.
func TestAgentJoinsWithAgentToken(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1"})
	m.Start()
	m.WaitReady(30 * time.Second)
	tok := m.AgentToken()
	id, _, _ := strings.Cut(agentSecret(t, tok), ".")
	a := testutil.NewAgent(t, testutil.AgentOptions{Name: "worker-1", Server: m.URL(), Token: tok})
	a.Start()
	waitNodeReady(t, m.Clientset(), "worker-1")

	// Its two requests, as kubectl shows them: the client one made with the
	// token, the serving one as the node.
	if out, ok := kubectlIfInstalled(t, m, "get", "csr"); ok {
		for signer, requester := range map[string]string{
			"kubernetes.io/kube-apiserver-client-kubelet": "system:bootstrap:" + id,
			"kubernetes.io/kubelet-serving":               "system:node:worker-1",
		} {
			found := false
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				found = found || (len(f) >= 4 && f[2] == signer && f[3] == requester)
			}
			if !found {
				t.Errorf("kubectl get csr lacks a %s request by %s:\n%s", signer, requester, out)
			}
		}
		if strings.Count(out, "Approved,Issued") != 2 {
			t.Errorf("kubectl get csr: want two Approved,Issued requests:\n%s", out)
		}
	}

	var masterKeys [][]byte
	for _, f := range []string{"ca.key", pki.ServiceAccountKeyFile, "server.key"} {
		b, err := os.ReadFile(filepath.Join(m.DataDir, "tls", f))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		masterKeys = append(masterKeys, blk.Bytes)
	}
	own := map[string]string{
		filepath.Join(a.DataDir, "agent", "client.key"):  filepath.Join(a.DataDir, "agent", "client.crt"),
		filepath.Join(a.DataDir, "agent", "serving.key"): filepath.Join(a.DataDir, "agent", "serving.crt"),
	}
	found := map[string]bool{}
	err := filepath.WalkDir(a.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, k := range masterKeys {
			if bytes.Contains(data, k) {
				t.Errorf("%s holds a master's key", path)
			}
		}
		for rest := data; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			if !strings.Contains(blk.Type, "PRIVATE KEY") {
				continue
			}
			crt, ok := own[path]
			if !ok {
				t.Errorf("%s holds a private key (%s) that is not the node's own", path, blk.Type)
				continue
			}
			if _, err := tls.LoadX509KeyPair(crt, path); err != nil {
				t.Errorf("%s is not the key of %s: %v", path, crt, err)
			}
			found[path] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != len(own) {
		t.Errorf("node keys found: %v, want %d", found, len(own))
	}
}

// TestTokenCommands: skiff token create/list/delete, and a deleted or
// expired token is refused.
func TestTokenCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1"})
	m.Start()
	m.WaitReady(30 * time.Second)

	out, err := m.Run(ctx, "token", "create", "--ttl", "1h", "--description", "e2e nodes")
	if err != nil {
		t.Fatalf("skiff token create: %v %s", err, out)
	}
	tok := strings.TrimSpace(out)
	id, _, _ := strings.Cut(agentSecret(t, tok), ".")
	out, err = m.Run(ctx, "token", "list")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "e2e nodes") || !strings.Contains(out, "authentication") {
		t.Fatalf("skiff token list: %v\n%s", err, out)
	}
	if _, err := client.BootstrapNode(ctx, m.URL(), tok, "n1", []string{"127.0.0.1"}); err != nil {
		t.Fatalf("bootstrap with a new token: %v", err)
	}
	if out, err := m.Run(ctx, "token", "delete", id); err != nil {
		t.Fatalf("skiff token delete: %v %s", err, out)
	}
	if _, err := client.BootstrapNode(ctx, m.URL(), tok, "n1", []string{"127.0.0.1"}); !apierrors.IsUnauthorized(err) {
		t.Errorf("bootstrap with a deleted token: %v, want 401", err)
	}
	if out, err := m.Run(ctx, "token", "list"); err != nil || strings.Contains(out, id) {
		t.Errorf("deleted token still listed: %v\n%s", err, out)
	}
	if out, err := m.Run(ctx, "token", "delete", id); err == nil {
		t.Errorf("deleting a deleted token succeeded: %s", out)
	}

	// A token past its TTL is refused.
	out, err = m.Run(ctx, "token", "create", "--ttl", "4s")
	if err != nil {
		t.Fatalf("skiff token create --ttl 4s: %v %s", err, out)
	}
	short := strings.TrimSpace(out)
	testutil.WaitFor(t, 30*time.Second, "the short token to expire", func() error {
		_, err := client.BootstrapNode(ctx, m.URL(), short, "n2", []string{"127.0.0.1"})
		if apierrors.IsUnauthorized(err) {
			return nil
		}
		return fmt.Errorf("bootstrap: %v", err)
	})
	if out, err := m.Run(ctx, "token", "list"); err != nil || !strings.Contains(out, "<expired>") {
		t.Errorf("expired token not shown as expired: %v\n%s", err, out)
	}
	// A master refuses to join with an agent token, before sending it.
	j := testutil.NewMaster(t, testutil.MasterOptions{Name: "m2", Join: m.URL(), Token: m.AgentToken()})
	j.Start()
	testutil.WaitFor(t, 20*time.Second, "a master with an agent token to give up", func() error {
		if strings.Contains(j.LogTail(20), "this is an agent token") {
			return nil
		}
		return fmt.Errorf("running %v, log: %s", j.Running(), j.LogTail(5))
	})
}

// TestNodeCertificateRenewal: with short node certificates, the agent
// renews its client and serving certificates in place, twice (the second
// renewal is authenticated with the first renewed certificate), without a
// restart, and keeps working after the first ones expired; the master's
// embedded agent renews its own too.
func TestNodeCertificateRenewal(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1", Agent: true, Args: []string{"--node-cert-lifetime", "20s", "--runtime", "fake"}})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	a := testutil.NewAgent(t, testutil.AgentOptions{Name: "rot-1", Server: m.URL(), Token: m.AgentToken()})
	a.Start()
	waitNodeReady(t, cs, "rot-1")
	pid := a.Pid()
	readCert := func(name string) *x509.Certificate {
		b, err := os.ReadFile(filepath.Join(a.DataDir, "agent", name))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", name)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first, firstServing := readCert("client.crt"), readCert("serving.crt")
	if life := first.NotAfter.Sub(first.NotBefore); life > time.Minute {
		t.Fatalf("client certificate lives %s, want the 20s of --node-cert-lifetime", life)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, fakePod("web", "rot-1", corev1.RestartPolicyAlways, "log=hello from web"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodPhase(t, cs, "default", "web", corev1.PodRunning)

	serials := map[string]bool{first.SerialNumber.String(): true}
	testutil.WaitFor(t, 90*time.Second, "two renewals of the node certificates", func() error {
		if !a.Running() || a.Pid() != pid {
			t.Fatalf("agent restarted or stopped (pid %d, was %d)\n%s", a.Pid(), pid, a.LogTail(20))
		}
		serials[readCert("client.crt").SerialNumber.String()] = true
		if len(serials) < 3 || time.Now().Before(first.NotAfter.Add(2*time.Second)) {
			return fmt.Errorf("%d client certificates seen", len(serials))
		}
		return nil
	})
	if s := readCert("serving.crt"); s.SerialNumber.Cmp(firstServing.SerialNumber) == 0 {
		t.Errorf("serving certificate not renewed")
	}
	// After the first certificates expired: the agent still reaches the
	// API (its Lease is renewed) and the master still reaches the kubelet
	// over TLS (its serving certificate is the new one).
	expired := time.Now()
	testutil.WaitFor(t, 30*time.Second, "lease renewed after the first certificate expired", func() error {
		l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, "rot-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(expired) {
			return fmt.Errorf("lease last renewed %v", l.Spec.RenewTime)
		}
		return nil
	})
	testutil.WaitFor(t, 30*time.Second, "pod logs through the kubelet", func() error {
		b, err := cs.CoreV1().Pods("default").GetLogs("web", &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), "hello from web") {
			return fmt.Errorf("logs %q", b)
		}
		return nil
	})
	if a.Pid() != pid {
		t.Fatalf("agent restarted")
	}

	// The embedded agent's kubelet serves a certificate issued after the
	// first ones expired, and its node's Lease is still renewed.
	caPEM, err := os.ReadFile(filepath.Join(m.DataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := tls.Dial("tcp", m.IP+":10250", &tls.Config{RootCAs: pool, ServerName: "m1"})
	if err != nil {
		t.Fatalf("embedded kubelet TLS: %v", err)
	}
	served := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	// Its first certificate dates from the master's start (NotBefore a
	// tenth of the lifetime earlier); a renewed one from 70% of it later.
	if !served.NotBefore.After(start.Add(10*time.Second)) || !served.NotAfter.After(time.Now()) || served.Subject.CommonName != "system:node:m1" {
		t.Errorf("embedded kubelet serves %s valid %s to %s (master started %s), want a renewed system:node:m1 certificate",
			served.Subject.CommonName, served.NotBefore, served.NotAfter, start)
	}
	testutil.WaitFor(t, 30*time.Second, "embedded node's lease renewed after its first certificate expired", func() error {
		l, err := cs.CoordinationV1().Leases("kube-node-lease").Get(ctx, "m1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(expired) {
			return fmt.Errorf("lease last renewed %v", l.Spec.RenewTime)
		}
		return nil
	})
}
