package apiserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os/exec"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
	"github.com/skiff-io/skiff/server/auth"
)

func newCSR(t *testing.T, name, signer string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: signer,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth},
		},
	}
}

func conditionTypes(c *certificatesv1.CertificateSigningRequest) string {
	var out []string
	for _, cond := range c.Status.Conditions {
		out = append(out, string(cond.Type)+"="+string(cond.Status))
	}
	return strings.Join(out, ",")
}

// TestCSRApproval: the approval subresource (kubectl certificate
// approve|deny) sets Approved or Denied and nothing else, needs "approve"
// on the signer (by name or domain wildcard), and refuses taking an
// approval back or approving and denying at once.
func TestCSRApproval(t *testing.T) {
	authz := &apiservertest.FakeAuthorizer{Deny: func(u *auth.User, a auth.Attributes) string {
		if u.Name == "alice" && a.Resource == "signers" && a.Verb == "approve" && a.Name != "example.com/*" {
			return "alice approves example.com signers only"
		}
		return ""
	}}
	srv := apiservertest.NewServer(t, apiservertest.Options{Authorizer: authz, User: &auth.User{Name: "alice", Groups: []string{auth.GroupAuthenticated}},
		AdminToken: "admin"})
	cs := srv.Clientset(t)
	ctx := context.Background()
	csrs := cs.CertificatesV1().CertificateSigningRequests()
	for _, c := range []*certificatesv1.CertificateSigningRequest{newCSR(t, "one", "example.com/client"), newCSR(t, "two", "other.org/client")} {
		if _, err := csrs.Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	one, err := csrs.Get(ctx, "one", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	one.Status.Conditions = append(one.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Test", Message: "approved by the test"})
	one.Spec.SignerName = "example.com/changed" // ignored: only conditions change
	one.Status.Certificate = []byte("not through approval")
	got, err := csrs.UpdateApproval(ctx, "one", one, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("approve: %v", err)
	}
	if conditionTypes(got) != "Approved=True" || got.Spec.SignerName != "example.com/client" || len(got.Status.Certificate) != 0 ||
		got.Status.Conditions[0].LastUpdateTime.IsZero() {
		t.Fatalf("after approval: conditions %s, signer %s, certificate %q", conditionTypes(got), got.Spec.SignerName, got.Status.Certificate)
	}

	// Taking it back, or denying as well: 422.
	back := got.DeepCopy()
	back.Status.Conditions = nil
	if _, err := csrs.UpdateApproval(ctx, "one", back, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("removing Approved: %v, want 422 Invalid", err)
	}
	both := got.DeepCopy()
	both.Status.Conditions = append(both.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue})
	if _, err := csrs.UpdateApproval(ctx, "one", both, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("Approved and Denied: %v, want 422 Invalid", err)
	}

	// Another domain's signer: 403 naming it; nothing changes.
	two, err := csrs.Get(ctx, "two", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	two.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	if _, err := csrs.UpdateApproval(ctx, "two", two, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "other.org/client") {
		t.Fatalf("approving another domain's request: %v, want 403 naming the signer", err)
	}
	if after, _ := csrs.Get(ctx, "two", metav1.GetOptions{}); len(after.Status.Conditions) != 0 {
		t.Fatalf("refused approval left conditions %s", conditionTypes(after))
	}

	// The real kubectl, as an admin.
	if _, err := exec.LookPath("/usr/bin/kubectl"); err != nil {
		t.Skip("/usr/bin/kubectl is not installed; skipping the kubectl part")
	}
	kc := writeKubeconfig(t, srv)
	out, err := exec.Command("/usr/bin/kubectl", "--kubeconfig", kc, "--token", "admin", "certificate", "deny", "two").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl certificate deny: %v\n%s", err, out)
	}
	if after, _ := csrs.Get(ctx, "two", metav1.GetOptions{}); conditionTypes(after) != "Denied=True" {
		t.Fatalf("after kubectl certificate deny: %s", conditionTypes(after))
	}
	out, err = exec.Command("/usr/bin/kubectl", "--kubeconfig", kc, "--token", "admin", "get", "csr", "two").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Denied") {
		t.Fatalf("kubectl get csr: %v\n%s", err, out)
	}
}

// TestCSRAPIOperations follows the upstream conformance test "should
// support CSR API operations": a merge PATCH of the object, of /approval
// and of /status, each keeping its metadata change; /approval changes only
// the conditions (any condition type), /status the certificate.
func TestCSRAPIOperations(t *testing.T) {
	srv := apiservertest.NewServer(t, apiservertest.Options{Admission: true})
	cs := srv.Clientset(t)
	ctx := context.Background()
	csrs := cs.CertificatesV1().CertificateSigningRequests()
	if _, err := csrs.Create(ctx, newCSR(t, "ops", "example.com/e2e-ops"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	patched, err := csrs.Patch(ctx, "ops", types.MergePatchType, []byte(`{"metadata":{"annotations":{"patched":"true"}}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("patch: %v", err)
	}
	if patched.Annotations["patched"] != "true" {
		t.Fatalf("patch lost the annotation: %v", patched.Annotations)
	}

	approval, err := csrs.Patch(ctx, "ops", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"patchedapproval":"true"}},"spec":{"signerName":"example.com/changed"},"status":{"conditions":[{"type":"ApprovalPatch","status":"True","reason":"e2e"}]}}`),
		metav1.PatchOptions{}, "approval")
	if err != nil {
		t.Fatalf("patch /approval: %v", err)
	}
	if conditionTypes(approval) != "ApprovalPatch=True" || approval.Annotations["patchedapproval"] != "true" ||
		approval.Spec.SignerName != "example.com/e2e-ops" || approval.Status.Conditions[0].LastTransitionTime.IsZero() {
		t.Fatalf("after patch /approval: conditions %s, annotations %v, signer %s", conditionTypes(approval), approval.Annotations, approval.Spec.SignerName)
	}

	toApprove := approval.DeepCopy()
	toApprove.Annotations["updatedapproval"] = "true"
	toApprove.Status.Conditions = append(toApprove.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "E2E", Message: "Set from an e2e test"})
	approved, err := csrs.UpdateApproval(ctx, "ops", toApprove, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update /approval: %v", err)
	}
	if conditionTypes(approved) != "ApprovalPatch=True,Approved=True" || approved.Annotations["updatedapproval"] != "true" {
		t.Fatalf("after update /approval: conditions %s, annotations %v", conditionTypes(approved), approved.Annotations)
	}

	status, err := csrs.Patch(ctx, "ops", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"patchedstatus":"true"}},"status":{"certificate":"Y2VydA=="}}`), metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatalf("patch /status: %v", err)
	}
	if string(status.Status.Certificate) != "cert" || status.Annotations["patchedstatus"] != "true" || conditionTypes(status) != "ApprovalPatch=True,Approved=True" {
		t.Fatalf("after patch /status: certificate %q, annotations %v, conditions %s", status.Status.Certificate, status.Annotations, conditionTypes(status))
	}
}
