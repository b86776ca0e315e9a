package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestPodServiceAccountToken: a real container finds its projected token,
// the cluster CA and its namespace at the standard path; the token
// authenticates as the pod's service account and stops working once the
// pod is gone. The node may only get tokens bound to its own pods.
func TestPodServiceAccountToken(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not installed")
	}
	n := startRealNode(t)
	ctx := context.Background()
	n.create(bbPod("sa", corev1.RestartPolicyAlways, "sleep 3600"))
	pod := n.waitPod("sa", "running", phase(corev1.PodRunning))

	const dir = "/var/run/secrets/kubernetes.io/serviceaccount"
	read := func(f string) string {
		t.Helper()
		out, err := n.kubectl("exec", "sa", "--", "cat", dir+"/"+f)
		if err != nil {
			t.Fatalf("cat %s in the container: %v: %s", f, err, out)
		}
		return out
	}
	token := strings.TrimSpace(read("token"))
	caPEM, err := os.ReadFile(filepath.Join(n.master.DataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if got := read("ca.crt"); got != string(caPEM) {
		t.Errorf("ca.crt in the container differs from the cluster CA")
	}
	if got := read("namespace"); got != "default" {
		t.Errorf("namespace file %q", got)
	}
	if out, err := n.kubectl("exec", "sa", "--", "touch", dir+"/x"); err == nil {
		t.Errorf("the token volume is writable: %s", out)
	}
	if u := whoIs(t, n.master, token); u != "system:serviceaccount:default:default" {
		t.Fatalf("the pod's token authenticated as %q", u)
	}
	if u := kubectlWhoami(t, n.master, token); u != "system:serviceaccount:default:default" {
		t.Fatalf("kubectl auth whoami with the pod's token: %q", u)
	}
	// A TokenReview of the token names the pod, its node and the token's
	// ID, as the conformance test "ServiceAccounts should mount an API
	// token into pods" wants of kube-apiserver.
	nodeObj, err := n.cs.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := n.cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil || !tr.Status.Authenticated {
		t.Fatalf("TokenReview of the pod's token: %v, %+v", err, tr.Status)
	}
	extra := tr.Status.User.Extra
	one := func(k string) string {
		if len(extra[k]) != 1 {
			t.Errorf("TokenReview extra %s = %v, want one value (extra %v)", k, extra[k], extra)
			return ""
		}
		return extra[k][0]
	}
	if id := one("authentication.kubernetes.io/credential-id"); !strings.HasPrefix(id, "JTI=") || len(id) < 5 {
		t.Errorf("credential-id %q, want JTI=<jti>", id)
	}
	if one("authentication.kubernetes.io/pod-name") != pod.Name || one("authentication.kubernetes.io/pod-uid") != string(pod.UID) ||
		one("authentication.kubernetes.io/node-name") != nodeObj.Name || one("authentication.kubernetes.io/node-uid") != string(nodeObj.UID) {
		t.Errorf("TokenReview extra %v, want pod %s/%s on node %s/%s", extra, pod.Name, pod.UID, nodeObj.Name, nodeObj.UID)
	}

	// The node's own credentials: tokens only bound to its pods.
	node := n.agent.NodeClientset(n.master.URL())
	sas := node.CoreV1().ServiceAccounts("default")
	bound := func(name string, uid string) *authenticationv1.TokenRequest {
		exp := int64(600)
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}
		if name != "" {
			tr.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: name, UID: typesUID(uid)}
		}
		return tr
	}
	if _, err := sas.CreateToken(ctx, "default", bound("sa", string(pod.UID)), metav1.CreateOptions{}); err != nil {
		t.Fatalf("node token for its pod: %v", err)
	}
	if _, err := sas.CreateToken(ctx, "default", bound("", ""), metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("node token bound to nothing: %v, want 403", err)
	}
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}, Spec: corev1.PodSpec{NodeName: "other-node",
		Containers: []corev1.Container{{Name: "c", Image: busyboxRef}}}}
	op, err := n.cs.CoreV1().Pods("default").Create(ctx, other, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sas.CreateToken(ctx, "default", bound("elsewhere", string(op.UID)), metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("node token bound to another node's pod: %v, want 403", err)
	}
	zero := int64(0)
	_ = n.cs.CoreV1().Pods("default").Delete(ctx, "elsewhere", metav1.DeleteOptions{GracePeriodSeconds: &zero})

	// The pod gone, its token is refused.
	n.deletePod("sa")
	testutil.WaitFor(t, 10*time.Second, "the token of a deleted pod refused", func() error {
		if u := whoIs(t, n.master, token); u != "" {
			return fmt.Errorf("still %q", u)
		}
		return nil
	})
}

func typesUID(s string) types.UID { return types.UID(s) }
