package apiserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
	"github.com/skiff-io/skiff/server/auth"
)

func TestTokenRequest(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	sas := e.cs.CoreV1().ServiceAccounts("default")
	sa, err := sas.Create(e.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sas.Create(e.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := testPod("p", "n1")
	p.Spec.ServiceAccountName = "robot"
	pod, err := e.cs.CoreV1().Pods("default").Create(e.ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node, err := e.cs.CoreV1().Nodes().Create(e.ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := e.cs.CoreV1().Secrets("default").Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	req := func(exp int64, aud []string, ref *authenticationv1.BoundObjectReference) *authenticationv1.TokenRequest {
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: aud, BoundObjectRef: ref}}
		if exp != 0 {
			tr.Spec.ExpirationSeconds = &exp
		}
		return tr
	}

	// Defaults: an hour, the API audience.
	before := time.Now()
	out, err := sas.CreateToken(e.ctx, "robot", req(0, nil, nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Name != "robot" || out.Namespace != "default" || *out.Spec.ExpirationSeconds != 3600 ||
		len(out.Spec.Audiences) != 1 || out.Spec.Audiences[0] != auth.DefaultIssuer {
		t.Fatalf("defaulted request %+v", out.Spec)
	}
	if d := out.Status.ExpirationTimestamp.Sub(before); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("expires in %v", d)
	}
	c, err := e.srv.Tokens.Verify(out.Status.Token, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.ServiceAccount != "robot" || c.ServiceAccountUID != sa.UID || c.Pod != nil {
		t.Fatalf("claims %+v", c)
	}

	// Bound to the pod: pod and node in the claims.
	out, err = sas.CreateToken(e.ctx, "robot", req(600, []string{"vault"}, &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "p", UID: pod.UID}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(out.Status.Token, ".")
	var raw map[string]any
	if b, err := decodeSegment(parts[1]); err != nil || json.Unmarshal(b, &raw) != nil {
		t.Fatalf("payload: %v", err)
	}
	k := raw["kubernetes.io"].(map[string]any)
	if k["pod"].(map[string]any)["uid"] != string(pod.UID) || k["node"].(map[string]any)["name"] != "n1" ||
		k["node"].(map[string]any)["uid"] != string(node.UID) || raw["aud"] != "vault" {
		t.Fatalf("claims %v", raw)
	}
	// Bound to a secret.
	out, err = sas.CreateToken(e.ctx, "robot", req(0, nil, &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: "s"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := e.srv.Tokens.Verify(out.Status.Token, time.Now()); err != nil || c.Secret == nil || c.Secret.UID != sec.UID {
		t.Fatalf("secret-bound claims %+v %v", c, err)
	}
	// Bound to a node (Kubernetes 1.32+): the node in the claims.
	out, err = sas.CreateToken(e.ctx, "robot", req(0, nil, &authenticationv1.BoundObjectReference{Kind: "Node", APIVersion: "v1", Name: "n1", UID: node.UID}), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("node-bound token: %v", err)
	}
	if c, err := e.srv.Tokens.Verify(out.Status.Token, time.Now()); err != nil || c.Node == nil || c.Node.UID != node.UID || c.Pod != nil || c.ID == "" {
		t.Fatalf("node-bound claims %+v %v", c, err)
	}
	// Longer than the bound: cut to 48 h.
	out, err = sas.CreateToken(e.ctx, "robot", req(365*24*3600, nil, nil), metav1.CreateOptions{})
	if err != nil || *out.Spec.ExpirationSeconds != 48*3600 {
		t.Fatalf("long request: %v %+v", err, out)
	}

	for name, tc := range map[string]struct {
		sa     string
		tr     *authenticationv1.TokenRequest
		check  func(error) bool
		reason string
	}{
		"too short":        {"robot", req(599, nil, nil), apierrors.IsInvalid, "may not specify a duration less than 10 minutes"},
		"missing account":  {"ghost", req(0, nil, nil), apierrors.IsNotFound, `serviceaccounts "ghost" not found`},
		"unsupported kind": {"robot", req(0, nil, &authenticationv1.BoundObjectReference{Kind: "ConfigMap", Name: "x"}), apierrors.IsInvalid, "spec.boundObjectRef.kind"},
		"missing pod":      {"robot", req(0, nil, &authenticationv1.BoundObjectReference{Kind: "Pod", Name: "gone"}), apierrors.IsNotFound, `pods "gone" not found`},
		"missing node":     {"robot", req(0, nil, &authenticationv1.BoundObjectReference{Kind: "Node", Name: "gone"}), apierrors.IsNotFound, `nodes "gone" not found`},
		"pod UID differs":  {"robot", req(0, nil, &authenticationv1.BoundObjectReference{Kind: "Pod", Name: "p", UID: "stale"}), apierrors.IsConflict, "does not match the UID in record"},
		"pod of another account": {"other", req(0, nil, &authenticationv1.BoundObjectReference{Kind: "Pod", Name: "p"}), apierrors.IsBadRequest,
			"to pod running with different serviceaccount name"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := sas.CreateToken(e.ctx, tc.sa, tc.tr, metav1.CreateOptions{})
			if !tc.check(err) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err = %v, want %q", err, tc.reason)
			}
		})
	}
	// Only create.
	e.do("GET", "/api/v1/namespaces/default/serviceaccounts/robot/token", "", nil).status(t, 405, metav1.StatusReasonMethodNotAllowed)
}

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func TestSelfSubjectReview(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	r := e.do("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "application/json",
		[]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`))
	var out authenticationv1.SelfSubjectReview
	if r.code != 201 || json.Unmarshal(r.body, &out) != nil || out.Status.UserInfo.Username != "test-admin" ||
		len(out.Status.UserInfo.Groups) != 2 || out.Kind != "SelfSubjectReview" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	e.do("GET", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "", nil).status(t, 405, metav1.StatusReasonMethodNotAllowed)

	// Impersonated extras (kubectl --as-user-extra) are the user's extra.
	r = e.do("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "application/json",
		[]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`),
		"Impersonate-User", "alice", "Impersonate-Extra-Scopes", "view", "Impersonate-Extra-Example.com%2fteam", "blue")
	out = authenticationv1.SelfSubjectReview{}
	if r.code != 201 || json.Unmarshal(r.body, &out) != nil || out.Status.UserInfo.Username != "alice" ||
		fmt.Sprint(out.Status.UserInfo.Extra) != "map[example.com/team:[blue] scopes:[view]]" {
		t.Fatalf("impersonated: %d %s", r.code, r.body)
	}
}

// TestTokenReviewExtra: a TokenReview and a SelfSubjectReview show the
// user's extra (a service-account token's pod, node and credential-id),
// as kube-apiserver's.
func TestTokenReviewExtra(t *testing.T) {
	extra := map[string][]string{auth.ExtraCredentialID: {"JTI=abc"}, auth.ExtraPodName: {"p"}, auth.ExtraNodeName: {"n1"}}
	srv := apiservertest.NewServer(t, apiservertest.Options{AdminToken: "admin",
		User: &auth.User{Name: "system:serviceaccount:default:robot", Groups: []string{auth.GroupAuthenticated}, Extra: extra}})
	cfg := srv.RESTConfig()
	cfg.BearerToken = "admin"
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := admin.AuthenticationV1().TokenReviews().Create(context.Background(),
		&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: apiservertest.Token}}, metav1.CreateOptions{})
	want := "map[authentication.kubernetes.io/credential-id:[JTI=abc] authentication.kubernetes.io/node-name:[n1] authentication.kubernetes.io/pod-name:[p]]"
	if err != nil || !tr.Status.Authenticated || fmt.Sprint(tr.Status.User.Extra) != want {
		t.Fatalf("TokenReview: %v, %+v", err, tr.Status)
	}
	ssr, err := srv.Clientset(t).AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || fmt.Sprint(ssr.Status.UserInfo.Extra) != want {
		t.Fatalf("SelfSubjectReview: %v, %+v", err, ssr.Status)
	}
}
