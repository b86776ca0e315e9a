package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/pki"
)

func newTokens(t *testing.T, cfg TokenConfig) *ServiceAccountTokens {
	t.Helper()
	keyPEM, err := pki.GenerateServiceAccountKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseServiceAccountKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := NewServiceAccountTokens(key, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// fakeSAObjects is an in-memory ServiceAccountObjects.
type fakeSAObjects struct {
	sas     map[string]*corev1.ServiceAccount
	pods    map[string]*corev1.Pod
	secrets map[string]*corev1.Secret
	nodes   map[string]*corev1.Node
}

func newFakeSAObjects() *fakeSAObjects {
	return &fakeSAObjects{sas: map[string]*corev1.ServiceAccount{}, pods: map[string]*corev1.Pod{}, secrets: map[string]*corev1.Secret{},
		nodes: map[string]*corev1.Node{}}
}

func (f *fakeSAObjects) GetNode(name string) (*corev1.Node, bool) {
	o, ok := f.nodes[name]
	return o, ok
}

func (f *fakeSAObjects) GetServiceAccount(ns, name string) (*corev1.ServiceAccount, bool) {
	o, ok := f.sas[ns+"/"+name]
	return o, ok
}

func (f *fakeSAObjects) GetPod(ns, name string) (*corev1.Pod, bool) {
	o, ok := f.pods[ns+"/"+name]
	return o, ok
}

func (f *fakeSAObjects) GetSecret(ns, name string) (*corev1.Secret, bool) {
	o, ok := f.secrets[ns+"/"+name]
	return o, ok
}

func meta(ns, name, uid string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, UID: typesUID(uid)}
}

// decodePayload returns the JSON claims of a compact JWS, unverified.
func decodePayload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIssueClaimsAsKubernetes(t *testing.T) {
	tokens := newTokens(t, TokenConfig{})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tok, exp, err := tokens.Issue(TokenSpec{
		Namespace: "app", ServiceAccount: "robot", ServiceAccountUID: "sa-uid", Expiration: time.Hour,
		Pod: &ObjectRef{Name: "p", UID: "pod-uid"}, Node: &ObjectRef{Name: "n1", UID: "node-uid"},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("expiry %v", exp)
	}
	c := decodePayload(t, tok)
	if c["iss"] != DefaultIssuer || c["sub"] != "system:serviceaccount:app:robot" {
		t.Errorf("iss/sub = %v %v", c["iss"], c["sub"])
	}
	// One audience is a string (RFC 7519 allows either form).
	if aud, _ := c["aud"].(string); aud != DefaultIssuer {
		t.Errorf("aud = %v, want the issuer", c["aud"])
	}
	if c["iat"].(float64) != float64(now.Unix()) || c["nbf"].(float64) != float64(now.Unix()) || c["exp"].(float64) != float64(now.Add(time.Hour).Unix()) {
		t.Errorf("iat/nbf/exp = %v %v %v", c["iat"], c["nbf"], c["exp"])
	}
	if c["jti"] == "" || c["jti"] == nil {
		t.Errorf("no jti")
	}
	k, _ := c["kubernetes.io"].(map[string]any)
	want := `{"namespace":"app","node":{"name":"n1","uid":"node-uid"},"pod":{"name":"p","uid":"pod-uid"},"serviceaccount":{"name":"robot","uid":"sa-uid"}}`
	if b, _ := json.Marshal(k); string(b) != want {
		t.Errorf("kubernetes.io = %s\nwant %s", b, want)
	}
	got, err := tokens.Verify(tok, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got.Namespace != "app" || got.ServiceAccount != "robot" || got.ServiceAccountUID != "sa-uid" || got.Pod.UID != "pod-uid" || got.Node.Name != "n1" || got.Legacy {
		t.Errorf("verified claims %+v", got)
	}
	// The header names the key as the JWKS does.
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
			Alg string `json:"alg"`
			Use string `json:"use"`
		} `json:"keys"`
	}
	b, _ := tokens.JWKS()
	if err := json.Unmarshal(b, &jwks); err != nil || len(jwks.Keys) != 1 || jwks.Keys[0].Alg != "ES256" || jwks.Keys[0].Use != "sig" {
		t.Fatalf("jwks %s: %v", b, err)
	}
	hb, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	var hdr map[string]any
	_ = json.Unmarshal(hb, &hdr)
	if hdr["kid"] != jwks.Keys[0].Kid || hdr["alg"] != "ES256" {
		t.Errorf("header %v, jwks kid %s", hdr, jwks.Keys[0].Kid)
	}
}

func TestVerifyRefuses(t *testing.T) {
	now := time.Now()
	tokens := newTokens(t, TokenConfig{})
	spec := TokenSpec{Namespace: "app", ServiceAccount: "robot", ServiceAccountUID: "u", Expiration: 10 * time.Minute}
	good, _, err := tokens.Issue(spec, now)
	if err != nil {
		t.Fatal(err)
	}
	other := newTokens(t, TokenConfig{})
	byOtherKey, _, _ := other.Issue(spec, now)
	otherIssuer := newTokens(t, TokenConfig{Issuer: "https://other.example"})
	aud := spec
	aud.Audiences = []string{"vault"}
	forVault, _, _ := tokens.Issue(aud, now)
	tampered := good[:len(good)-4] + "AAAA"

	for name, tc := range map[string]struct {
		v   *ServiceAccountTokens
		tok string
		at  time.Time
	}{
		"another key":           {tokens, byOtherKey, now},
		"another issuer":        {otherIssuer, good, now},
		"another audience":      {tokens, forVault, now},
		"expired":               {tokens, good, now.Add(12 * time.Minute)},
		"not yet valid":         {tokens, good, now.Add(-5 * time.Minute)},
		"bad signature":         {tokens, tampered, now},
		"not a JWT":             {tokens, "a.b.c", now},
		"key of another issuer": {otherIssuer, byOtherKey, now},
	} {
		t.Run(name, func(t *testing.T) {
			if c, err := tc.v.Verify(tc.tok, tc.at); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalidToken", c, err)
			}
		})
	}
	// An audience the API is configured with is accepted.
	api := newTokens(t, TokenConfig{APIAudiences: []string{"api", "vault"}})
	tok, _, _ := api.Issue(aud, now)
	if _, err := api.Verify(tok, now); err != nil {
		t.Fatalf("configured audience refused: %v", err)
	}
}

func TestRSAKey(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := NewServiceAccountTokens(k, TokenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := tokens.Issue(TokenSpec{Namespace: "a", ServiceAccount: "b", ServiceAccountUID: "u"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Verify(tok, time.Now()); err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewServiceAccountTokens(p384, TokenConfig{}); err == nil {
		t.Fatal("P-384 key accepted")
	}
}

func TestAuthenticateServiceAccountTokens(t *testing.T) {
	now := time.Now()
	clock := now
	tokens := newTokens(t, TokenConfig{})
	objs := newFakeSAObjects()
	objs.sas["app/robot"] = &corev1.ServiceAccount{ObjectMeta: meta("app", "robot", "sa-1")}
	objs.pods["app/p"] = &corev1.Pod{ObjectMeta: meta("app", "p", "pod-1")}
	objs.secrets["app/s"] = &corev1.Secret{ObjectMeta: meta("app", "s", "sec-1")}
	a := NewAuthenticator(AuthenticatorConfig{ServiceAccountTokens: tokens, Objects: objs, Now: func() time.Time { return clock }})
	issue := func(spec TokenSpec) string {
		t.Helper()
		spec.Namespace, spec.ServiceAccount = "app", "robot"
		if spec.ServiceAccountUID == "" {
			spec.ServiceAccountUID = "sa-1"
		}
		tok, _, err := tokens.Issue(spec, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	authn := func(tok string) (*User, error) { return a.Authenticate(newRequest(t, "Bearer "+tok)) }
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:app", "system:authenticated"}

	plain := issue(TokenSpec{})
	u, err := authn(plain)
	assertUser(t, u, err, "system:serviceaccount:app:robot", groups...)
	if u.UID != "sa-1" {
		t.Errorf("uid %q", u.UID)
	}
	jti := decodePayload(t, plain)["jti"].(string)
	if got := fmt.Sprint(u.Extra); got != "map[authentication.kubernetes.io/credential-id:[JTI="+jti+"]]" {
		t.Errorf("extra of an unbound token: %s", got)
	}
	// Bound to a pod: the pod and its node (information only: the node
	// need not exist) in the extra, as kube-apiserver's.
	podBound := issue(TokenSpec{Pod: &ObjectRef{Name: "p", UID: "pod-1"}, Node: &ObjectRef{Name: "n1", UID: "node-1"}})
	u, err = authn(podBound)
	assertUser(t, u, err, "system:serviceaccount:app:robot", groups...)
	jti = decodePayload(t, podBound)["jti"].(string)
	want := "map[authentication.kubernetes.io/credential-id:[JTI=" + jti + "] authentication.kubernetes.io/node-name:[n1] " +
		"authentication.kubernetes.io/node-uid:[node-1] authentication.kubernetes.io/pod-name:[p] authentication.kubernetes.io/pod-uid:[pod-1]]"
	if got := fmt.Sprint(u.Extra); got != want {
		t.Errorf("extra of a pod-bound token:\n got %s\nwant %s", got, want)
	}
	// Bound to a node: valid while that node (same UID) exists.
	objs.nodes["n1"] = &corev1.Node{ObjectMeta: meta("", "n1", "node-1")}
	nodeBound := issue(TokenSpec{Node: &ObjectRef{Name: "n1", UID: "node-1"}})
	u, err = authn(nodeBound)
	assertUser(t, u, err, "system:serviceaccount:app:robot", groups...)
	if u.Extra[ExtraNodeName][0] != "n1" || u.Extra[ExtraNodeUID][0] != "node-1" || u.Extra[ExtraPodName] != nil {
		t.Errorf("extra of a node-bound token: %v", u.Extra)
	}
	objs.nodes["n1"] = &corev1.Node{ObjectMeta: meta("", "n1", "node-2")}
	u, err = authn(nodeBound)
	assertUnauthenticated(t, u, err)
	delete(objs.nodes, "n1")
	u, err = authn(nodeBound)
	assertUnauthenticated(t, u, err)
	secretBound := issue(TokenSpec{Secret: &ObjectRef{Name: "s", UID: "sec-1"}})
	u, err = authn(secretBound)
	assertUser(t, u, err, "system:serviceaccount:app:robot", groups...)

	// Another UID: the account was deleted and made again.
	u, err = authn(issue(TokenSpec{ServiceAccountUID: "sa-old"}))
	assertUnauthenticated(t, u, err)
	// The bound pod recreated under the same name.
	u, err = authn(issue(TokenSpec{Pod: &ObjectRef{Name: "p", UID: "pod-old"}}))
	assertUnauthenticated(t, u, err)
	// The bound pod deleted.
	delete(objs.pods, "app/p")
	u, err = authn(podBound)
	assertUnauthenticated(t, u, err)
	// The bound secret deleted.
	delete(objs.secrets, "app/s")
	u, err = authn(secretBound)
	assertUnauthenticated(t, u, err)
	// Expired.
	clock = now.Add(2 * time.Hour)
	u, err = authn(plain)
	assertUnauthenticated(t, u, err)
	clock = now
	// The account deleted.
	delete(objs.sas, "app/robot")
	u, err = authn(plain)
	assertUnauthenticated(t, u, err)
}

func TestAuthenticateLegacyToken(t *testing.T) {
	tokens := newTokens(t, TokenConfig{})
	objs := newFakeSAObjects()
	objs.sas["app/robot"] = &corev1.ServiceAccount{ObjectMeta: meta("app", "robot", "sa-1")}
	a := NewAuthenticator(AuthenticatorConfig{ServiceAccountTokens: tokens, Objects: objs})
	tok, err := tokens.IssueLegacy("app", "robot", "sa-1", "robot-token")
	if err != nil {
		t.Fatal(err)
	}
	c := decodePayload(t, tok)
	if c["iss"] != LegacyIssuer || c["kubernetes.io/serviceaccount/secret.name"] != "robot-token" || c["exp"] != nil {
		t.Errorf("legacy claims %v", c)
	}
	// Not accepted until a Secret holds it.
	u, err := a.Authenticate(newRequest(t, "Bearer "+tok))
	assertUnauthenticated(t, u, err)
	objs.secrets["app/robot-token"] = &corev1.Secret{ObjectMeta: meta("app", "robot-token", "sec-1"), Type: corev1.SecretTypeServiceAccountToken,
		Data: map[string][]byte{"token": []byte(tok)}}
	u, err = a.Authenticate(newRequest(t, "Bearer "+tok))
	assertUser(t, u, err, "system:serviceaccount:app:robot", "system:serviceaccounts", "system:serviceaccounts:app", "system:authenticated")
	if u.Extra != nil {
		t.Errorf("extra of a legacy token (no jti, as kube-apiserver's): %v", u.Extra)
	}
	// A Secret holding another token does not vouch for this one.
	objs.secrets["app/robot-token"].Data["token"] = []byte("other")
	u, err = a.Authenticate(newRequest(t, "Bearer "+tok))
	assertUnauthenticated(t, u, err)
	objs.secrets["app/robot-token"].Data["token"] = []byte(tok)
	// The account recreated: refused.
	objs.sas["app/robot"] = &corev1.ServiceAccount{ObjectMeta: meta("app", "robot", "sa-2")}
	u, err = a.Authenticate(newRequest(t, "Bearer "+tok))
	assertUnauthenticated(t, u, err)
}

func typesUID(s string) types.UID { return types.UID(s) }

// BenchmarkIssue: signing one bound token (ES256).
func BenchmarkIssue(b *testing.B) {
	keyPEM, _ := pki.GenerateServiceAccountKey()
	key, _ := pki.ParseServiceAccountKey(keyPEM)
	tokens, _ := NewServiceAccountTokens(key, TokenConfig{})
	spec := TokenSpec{Namespace: "app", ServiceAccount: "robot", ServiceAccountUID: "u", Pod: &ObjectRef{Name: "p", UID: "pu"}}
	now := time.Now()
	for b.Loop() {
		if _, _, err := tokens.Issue(spec, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify: checking one bound token's signature and claims.
func BenchmarkVerify(b *testing.B) {
	keyPEM, _ := pki.GenerateServiceAccountKey()
	key, _ := pki.ParseServiceAccountKey(keyPEM)
	tokens, _ := NewServiceAccountTokens(key, TokenConfig{})
	now := time.Now()
	tok, _, _ := tokens.Issue(TokenSpec{Namespace: "app", ServiceAccount: "robot", ServiceAccountUID: "u"}, now)
	for b.Loop() {
		if _, err := tokens.Verify(tok, now); err != nil {
			b.Fatal(err)
		}
	}
}
