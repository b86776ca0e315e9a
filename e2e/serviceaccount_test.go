package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// tokenClient is a clientset that authenticates with a bearer token.
func tokenClient(t *testing.T, m *testutil.Master, token string) *kubernetes.Clientset {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(m.DataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: m.URL(), BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// whoIs lists pods with token through m and returns the user the API saw:
// a service account has no rights yet, so the 403 names it; a token that
// is not accepted gives 401 ("" returned).
func whoIs(t *testing.T, m *testutil.Master, token string) string {
	t.Helper()
	_, err := tokenClient(t, m, token).CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	switch {
	case apierrors.IsUnauthorized(err):
		return ""
	case apierrors.IsForbidden(err):
		msg := err.Error()
		i := strings.Index(msg, `User "`)
		if i < 0 {
			t.Fatalf("403 without a user: %s", msg)
		}
		rest := msg[i+len(`User "`):]
		return rest[:strings.Index(rest, `"`)]
	default:
		t.Fatalf("list pods with a token: %v, want 401 or 403", err)
		return ""
	}
}

// kubectlWhoami runs `kubectl auth whoami` (SelfSubjectReview) with
// token against m, and returns the user name it reports.
func kubectlWhoami(t *testing.T, m *testutil.Master, token string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	empty := filepath.Join(t.TempDir(), "empty-kubeconfig")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "/usr/bin/kubectl", "--kubeconfig", empty, "--server", m.URL(),
		"--certificate-authority", filepath.Join(m.DataDir, "tls", "ca.crt"), "--token", token,
		"auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl auth whoami: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitWho waits until token authenticates through m as want: a master
// authenticates from its local state, which may lag a write made through
// another master by a moment.
func waitWho(t *testing.T, m *testutil.Master, token, want string) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("token authenticated as %s via %s", want, m.Name), func() error {
		if u := whoIs(t, m, token); u != want {
			return fmt.Errorf("authenticated as %q", u)
		}
		return nil
	})
}

func kubectlCreateToken(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/kubectl", append([]string{"--kubeconfig", kubeconfig, "create", "token"}, args...)...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("kubectl create token %v: %v: %s", args, err, msg)
	}
	return strings.TrimSpace(string(out))
}

// TestServiceAccountTokens: kubectl create token, tokens valid on every
// master and across restarts, the issuer's discovery documents, refusal
// once the account is gone, legacy Secret tokens, the kube-root-ca.crt
// ConfigMap and the ServiceAccount admission of pods.
func TestServiceAccountTokens(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	c := testutil.StartCluster(t, 2)
	m1, m2 := c.Masters[0], c.Masters[1]
	ctx := context.Background()
	cs := m1.Clientset()
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// kubectl create token, used against both masters: they share the key.
	tok := kubectlCreateToken(t, m1.Kubeconfig(), "robot", "--duration", "20m")
	for _, m := range []*testutil.Master{m1, m2} {
		waitWho(t, m, tok, "system:serviceaccount:default:robot")
	}
	if u := kubectlWhoami(t, m2, tok); u != "system:serviceaccount:default:robot" {
		t.Fatalf("kubectl auth whoami: %q", u)
	}
	// Another audience does not authenticate to the API.
	vault := kubectlCreateToken(t, m2.Kubeconfig(), "robot", "--audience", "vault")
	if u := whoIs(t, m1, vault); u != "" {
		t.Fatalf("token for audience vault authenticated as %q", u)
	}
	// Shorter than 10 minutes is refused.
	ctx30, cancel := context.WithTimeout(ctx, 30*time.Second)
	out, err := exec.CommandContext(ctx30, "/usr/bin/kubectl", "--kubeconfig", m1.Kubeconfig(), "create", "token", "robot", "--duration", "5m").CombinedOutput()
	cancel()
	if err == nil || !strings.Contains(string(out), "may not specify a duration less than 10 minutes") {
		t.Fatalf("5m token: %v: %s", err, out)
	}

	// The issuer's discovery documents are public.
	caPEM, _ := os.ReadFile(filepath.Join(m1.DataDir, "tls", "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	anon := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	getJSON := func(url string, into any) {
		t.Helper()
		resp, err := anon.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || json.Unmarshal(b, into) != nil {
			t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
		}
	}
	var oidc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(m2.URL()+"/.well-known/openid-configuration", &oidc)
	if oidc.Issuer != "https://kubernetes.default.svc.cluster.local" || oidc.JWKSURI != oidc.Issuer+"/openid/v1/jwks" {
		t.Fatalf("openid-configuration %+v", oidc)
	}
	var jwks1, jwks2 struct {
		Keys []map[string]any `json:"keys"`
	}
	getJSON(m1.URL()+"/openid/v1/jwks", &jwks1)
	getJSON(m2.URL()+"/openid/v1/jwks", &jwks2)
	if len(jwks1.Keys) != 1 || jwks1.Keys[0]["kid"] == nil || jwks1.Keys[0]["kid"] != jwks2.Keys[0]["kid"] || jwks1.Keys[0]["d"] != nil {
		t.Fatalf("jwks %v / %v", jwks1, jwks2)
	}

	// kube-root-ca.crt is published in every namespace, new ones too.
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"default", "kube-system", "team"} {
		testutil.WaitFor(t, 30*time.Second, "kube-root-ca.crt in "+ns, func() error {
			cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cm.Data["ca.crt"] != string(caPEM) {
				return fmt.Errorf("ca.crt differs")
			}
			return nil
		})
	}

	// Admission: pods get the kube-api-access volume; a missing account
	// is refused.
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	got, err := cs.CoreV1().Pods("team").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.ServiceAccountName != "default" || len(got.Spec.Volumes) != 1 || !strings.HasPrefix(got.Spec.Volumes[0].Name, "kube-api-access-") ||
		len(got.Spec.Containers[0].VolumeMounts) != 1 || got.Spec.Containers[0].VolumeMounts[0].MountPath != "/var/run/secrets/kubernetes.io/serviceaccount" {
		t.Fatalf("admitted pod %+v", got.Spec)
	}
	p.Name, p.Spec.ServiceAccountName = "q", "ghost"
	if _, err := cs.CoreV1().Pods("team").Create(ctx, p, metav1.CreateOptions{}); !apierrors.IsForbidden(err) ||
		!strings.Contains(err.Error(), "error looking up service account team/ghost") {
		t.Fatalf("pod with a missing account: %v", err)
	}

	// Legacy token Secrets are filled by the token controller and accepted
	// while the Secret exists.
	sec, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "robot-token",
		Annotations: map[string]string{corev1.ServiceAccountNameKey: "robot"}}, Type: corev1.SecretTypeServiceAccountToken}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "legacy token filled", func() error {
		sec, err = cs.CoreV1().Secrets("default").Get(ctx, "robot-token", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(sec.Data["token"]) == 0 || string(sec.Data["ca.crt"]) != string(caPEM) || string(sec.Data["namespace"]) != "default" {
			return fmt.Errorf("data keys %d", len(sec.Data))
		}
		return nil
	})
	legacy := string(sec.Data["token"])
	waitWho(t, m2, legacy, "system:serviceaccount:default:robot")
	if err := cs.CoreV1().Secrets("default").Delete(ctx, "robot-token", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "legacy token refused once its Secret is gone", func() error {
		if u := whoIs(t, m2, legacy); u != "" {
			return fmt.Errorf("still %q", u)
		}
		return nil
	})

	// Restarting both masters keeps the key: the token stays valid.
	for _, m := range c.Masters {
		m.Stop()
	}
	for _, m := range c.Masters {
		m.Start()
	}
	for _, m := range c.Masters {
		m.WaitReady(60 * time.Second)
	}
	waitWho(t, m2, tok, "system:serviceaccount:default:robot")

	// The account deleted: its tokens are refused.
	if err := m1.Clientset().CoreV1().ServiceAccounts("default").Delete(ctx, "robot", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "token refused once its account is gone", func() error {
		if u := whoIs(t, m1, tok); u != "" {
			return fmt.Errorf("still %q", u)
		}
		return nil
	})
}

// TestServiceAccountKeyOfOlderDataDirs: masters whose data dirs lack the
// service-account key (clusters made before it existed) derive the same
// key from the CA key, so a token from one is accepted by the other.
func TestServiceAccountKeyOfOlderDataDirs(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	c := testutil.StartCluster(t, 2)
	for _, m := range c.Masters {
		m.Stop()
	}
	for _, m := range c.Masters {
		if err := os.Remove(filepath.Join(m.DataDir, "tls", "service-account.key")); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range c.Masters {
		m.Start()
	}
	for _, m := range c.Masters {
		m.WaitReady(60 * time.Second)
	}
	for _, m := range c.Masters {
		if st, err := os.Stat(filepath.Join(m.DataDir, "tls", "service-account.key")); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: derived key file: %v %v", m.Name, st, err)
		}
	}
	tok := kubectlCreateToken(t, c.Masters[0].Kubeconfig(), "default")
	waitWho(t, c.Masters[1], tok, "system:serviceaccount:default:default")
}
