package webhook

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/fsmtest"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// env is a store with webhook configurations and a dispatcher over it.
type env struct {
	t     testing.TB
	reg   *registry.Registry
	store *fsmtest.FakeRaftStore
	d     *Dispatcher
}

func newEnv(t testing.TB) *env {
	reg := registry.New()
	log := slog.New(slog.DiscardHandler)
	return &env{t: t, reg: reg, store: fsmtest.NewFakeRaftStore(fsm.Options{Logger: log}), d: New(reg, log)}
}

func (e *env) create(resource, group string, obj runtime.Object) {
	e.t.Helper()
	kind, ok := e.reg.Lookup(group, "v1", resource)
	if !ok {
		e.t.Fatalf("no kind %s", resource)
	}
	kind.Default(obj)
	if errs := kind.Validate(obj); len(errs) > 0 {
		e.t.Fatalf("invalid %s: %v", resource, errs)
	}
	data, err := kind.Encode(obj)
	if err != nil {
		e.t.Fatal(err)
	}
	m := obj.(metav1.Object)
	b, err := fsm.EncodeMutation(fsm.Mutation{Op: fsm.OpCreate, Key: kind.Key(m.GetNamespace(), m.GetName()), UID: m.GetName(), Object: data})
	if err != nil {
		e.t.Fatal(err)
	}
	if res, err := e.store.Apply(context.Background(), b); err != nil || res.Err != nil {
		e.t.Fatalf("apply: %v %v", err, res)
	}
}

func (e *env) snap() *state.Snapshot {
	s, err := e.store.Read(context.Background(), false, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// hookServer serves admission reviews with fn over TLS; it returns the
// server's URL and CA bundle.
func hookServer(t testing.TB, fn func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse) (string, []byte) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&rev); err != nil || rev.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		resp := fn(rev.Request)
		if resp == nil {
			<-r.Context().Done() // hang
			return
		}
		resp.UID = rev.Request.UID
		rev.Response, rev.Request = resp, nil
		_ = json.NewEncoder(w).Encode(&rev)
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv.URL, ca
}

func ptr[T any](v T) *T { return &v }

func configMapRule() []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
	}}
}

func validating(name, url string, ca []byte, fp admissionregistrationv1.FailurePolicyType, timeout int32) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    name + ".example.com",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:                   configMapRule(),
			FailurePolicy:           &fp,
			SideEffects:             ptr(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          &timeout,
		}},
	}
}

func mutating(name, url string, ca []byte, reinvoke admissionregistrationv1.ReinvocationPolicyType) *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    name + ".example.com",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:                   configMapRule(),
			SideEffects:             ptr(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &reinvoke,
		}},
	}
}

func (e *env) attrs(ns string, labels map[string]string) *Attributes {
	kind, _ := e.reg.Lookup("", "v1", "configmaps")
	return &Attributes{
		Operation: admissionregistrationv1.Create, Kind: kind, Namespace: ns, Name: "cm",
		Object: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: ns, Labels: labels}},
	}
}

func TestResourceMatches(t *testing.T) {
	for _, c := range []struct {
		rules    []string
		res, sub string
		want     bool
	}{
		{[]string{"pods"}, "pods", "", true},
		{[]string{"pods"}, "pods", "status", false},
		{[]string{"pods/status"}, "pods", "status", true},
		{[]string{"pods/status"}, "pods", "", false},
		{[]string{"pods/*"}, "pods", "exec", true},
		{[]string{"*"}, "configmaps", "", true},
		{[]string{"*"}, "pods", "status", false},
		{[]string{"*/status"}, "deployments", "status", true},
		{[]string{"*/*"}, "pods", "status", true},
		{[]string{"secrets"}, "configmaps", "", false},
	} {
		if got := resourceMatches(c.rules, c.res, c.sub); got != c.want {
			t.Errorf("resourceMatches(%v, %s/%s) = %v, want %v", c.rules, c.res, c.sub, got, c.want)
		}
	}
}

func TestRuleMatchesScopeAndOperation(t *testing.T) {
	e := newEnv(t)
	a := e.attrs("default", nil)
	r := configMapRule()[0]
	if !ruleMatches(r, a) {
		t.Fatal("configmap create should match")
	}
	r.Scope = ptr(admissionregistrationv1.ClusterScope)
	if ruleMatches(r, a) {
		t.Fatal("Cluster scope matched a namespaced configmap")
	}
	r.Scope = ptr(admissionregistrationv1.NamespacedScope)
	r.Operations = []admissionregistrationv1.OperationType{admissionregistrationv1.Delete}
	if ruleMatches(r, a) {
		t.Fatal("DELETE rule matched a create")
	}
	r.Operations = []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll}
	r.APIVersions = []string{"v2"}
	if ruleMatches(r, a) {
		t.Fatal("v2 rule matched v1")
	}
}

func TestValidatingDenies(t *testing.T) {
	e := newEnv(t)
	url, ca := hookServer(t, func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		var cm corev1.ConfigMap
		if err := json.Unmarshal(r.Object.Raw, &cm); err != nil || cm.Kind != "ConfigMap" {
			return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Message: "bad object"}}
		}
		if cm.Labels["forbidden"] != "" {
			return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Message: "label forbidden is not allowed"}, Warnings: []string{"careful"}}
		}
		return &admissionv1.AdmissionResponse{Allowed: true}
	})
	e.create("validatingwebhookconfigurations", admissionregistrationv1.GroupName, validating("deny", url, ca, admissionregistrationv1.Fail, 5))
	if err := e.d.Validate(context.Background(), e.snap(), e.attrs("default", nil), nil); err != nil {
		t.Fatalf("plain configmap refused: %v", err)
	}
	var warnings []string
	err := e.d.Validate(context.Background(), e.snap(), e.attrs("default", map[string]string{"forbidden": "x"}), func(s string) { warnings = append(warnings, s) })
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), `admission webhook "deny.example.com" denied the request: label forbidden is not allowed`) {
		t.Fatalf("labelled configmap: %v, want 400 from the webhook", err)
	}
	if len(warnings) != 1 || warnings[0] != "careful" {
		t.Fatalf("warnings %v", warnings)
	}
}

func TestMutatingPatchAndReinvocation(t *testing.T) {
	e := newEnv(t)
	var firstCalls atomic.Int32
	// a-first (IfNeeded) adds label a only when b is present, so it must be
	// called again after b-second added b.
	urlA, caA := hookServer(t, func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		firstCalls.Add(1)
		var cm corev1.ConfigMap
		_ = json.Unmarshal(r.Object.Raw, &cm)
		if cm.Labels["b"] == "" {
			return &admissionv1.AdmissionResponse{Allowed: true}
		}
		return &admissionv1.AdmissionResponse{Allowed: true, PatchType: ptr(admissionv1.PatchTypeJSONPatch),
			Patch: []byte(`[{"op":"add","path":"/metadata/labels/a","value":"1"}]`)}
	})
	urlB, caB := hookServer(t, func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return &admissionv1.AdmissionResponse{Allowed: true, PatchType: ptr(admissionv1.PatchTypeJSONPatch),
			Patch: []byte(`[{"op":"add","path":"/metadata/labels","value":{"b":"2"}}]`)}
	})
	e.create("mutatingwebhookconfigurations", admissionregistrationv1.GroupName, mutating("b-second", urlB, caB, admissionregistrationv1.NeverReinvocationPolicy))
	e.create("mutatingwebhookconfigurations", admissionregistrationv1.GroupName, mutating("a-first", urlA, caA, admissionregistrationv1.IfNeededReinvocationPolicy))
	a := e.attrs("default", nil)
	if err := e.d.Mutate(context.Background(), e.snap(), a, nil); err != nil {
		t.Fatal(err)
	}
	cm := a.Object.(*corev1.ConfigMap)
	if cm.Labels["a"] != "1" || cm.Labels["b"] != "2" {
		t.Fatalf("labels %v, want a=1 b=2", cm.Labels)
	}
	if n := firstCalls.Load(); n != 2 {
		t.Fatalf("a-first called %d times, want 2 (reinvoked once)", n)
	}
}

func TestFailurePolicyOnHang(t *testing.T) {
	for _, fp := range []admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Ignore, admissionregistrationv1.Fail} {
		t.Run(string(fp), func(t *testing.T) {
			e := newEnv(t)
			url, ca := hookServer(t, func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse { return nil })
			e.create("validatingwebhookconfigurations", admissionregistrationv1.GroupName, validating("hang", url, ca, fp, 1))
			start := time.Now()
			err := e.d.Validate(context.Background(), e.snap(), e.attrs("default", nil), nil)
			took := time.Since(start)
			if took < time.Second || took > 5*time.Second {
				t.Fatalf("took %v, want the 1 s timeout", took)
			}
			if fp == admissionregistrationv1.Ignore && err != nil {
				t.Fatalf("Ignore: %v", err)
			}
			if fp == admissionregistrationv1.Fail && (!apierrors.IsInternalError(err) || !strings.Contains(err.Error(), `failed calling webhook "hang.example.com"`)) {
				t.Fatalf("Fail: %v, want an internal error naming the webhook", err)
			}
			// The request carries its timeout, as kube-apiserver's
			// (conformance "AdmissionWebhook should honor timeout" looks
			// for "?timeout=1s" in the error).
			if fp == admissionregistrationv1.Fail && !strings.Contains(err.Error(), "?timeout=1s") {
				t.Fatalf("Fail: %v, want the webhook URL with ?timeout=1s", err)
			}
		})
	}
}

func TestCABundleVerified(t *testing.T) {
	e := newEnv(t)
	url, _ := hookServer(t, func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return &admissionv1.AdmissionResponse{Allowed: true}
	})
	// No caBundle: the system roots, which do not hold the test server's CA.
	e.create("validatingwebhookconfigurations", admissionregistrationv1.GroupName, validating("tls", url, nil, admissionregistrationv1.Fail, 5))
	err := e.d.Validate(context.Background(), e.snap(), e.attrs("default", nil), nil)
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("webhook with an unknown certificate: %v, want a certificate error", err)
	}
}

func TestNamespaceAndObjectSelector(t *testing.T) {
	e := newEnv(t)
	var calls atomic.Int32
	url, ca := hookServer(t, func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		calls.Add(1)
		return &admissionv1.AdmissionResponse{Allowed: false}
	})
	e.create("namespaces", "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "skip", Labels: map[string]string{"webhooks": "off"}}})
	e.create("namespaces", "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "checked"}})
	c := validating("sel", url, ca, admissionregistrationv1.Fail, 5)
	c.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "webhooks", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"off"}}}}
	c.Webhooks[0].ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"check": "yes"}}
	e.create("validatingwebhookconfigurations", admissionregistrationv1.GroupName, c)
	ctx := context.Background()
	if err := e.d.Validate(ctx, e.snap(), e.attrs("skip", map[string]string{"check": "yes"}), nil); err != nil {
		t.Fatalf("excluded namespace: %v", err)
	}
	if err := e.d.Validate(ctx, e.snap(), e.attrs("checked", nil), nil); err != nil {
		t.Fatalf("object without the label: %v", err)
	}
	if calls.Load() != 0 {
		t.Fatalf("webhook called %d times for excluded requests", calls.Load())
	}
	err := e.d.Validate(ctx, e.snap(), e.attrs("checked", map[string]string{"check": "yes"}), nil)
	if !strings.Contains(err.Error(), "denied the request without explanation") {
		t.Fatalf("matching request: %v", err)
	}
}

func TestDryRunNeedsNoSideEffects(t *testing.T) {
	e := newEnv(t)
	url, ca := hookServer(t, func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return &admissionv1.AdmissionResponse{Allowed: true}
	})
	c := validating("side", url, ca, admissionregistrationv1.Ignore, 5)
	e.create("validatingwebhookconfigurations", admissionregistrationv1.GroupName, c)
	a := e.attrs("default", nil)
	a.DryRun = true
	if err := e.d.Validate(context.Background(), e.snap(), a, nil); err != nil {
		t.Fatalf("dry run, sideEffects None: %v", err)
	}
	// v1 validation refuses Unknown; a hook stored with it (as through an
	// older version) is refused for dry runs whatever its failurePolicy.
	h := c.Webhooks[0]
	h.SideEffects = ptr(admissionregistrationv1.SideEffectClassUnknown)
	if err := e.d.callValidating(context.Background(), e.snap(), a, &h, nil); !apierrors.IsBadRequest(err) {
		t.Fatalf("dry run, sideEffects Unknown: %v, want 400", err)
	}
}

func TestMatchConditions(t *testing.T) {
	e := newEnv(t)
	var calls atomic.Int32
	url, ca := hookServer(t, func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		calls.Add(1)
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Message: "called"}}
	})
	c := validating("cel", url, ca, admissionregistrationv1.Fail, 5)
	c.Webhooks[0].MatchConditions = []admissionregistrationv1.MatchCondition{
		{Name: "not-skipped", Expression: `!has(object.metadata.labels) || !('skip' in object.metadata.labels)`},
		{Name: "create-only", Expression: `request.operation == 'CREATE'`},
	}
	e.create("validatingwebhookconfigurations", admissionregistrationv1.GroupName, c)
	ctx := context.Background()
	if err := e.d.Validate(ctx, e.snap(), e.attrs("default", map[string]string{"skip": "1"}), nil); err != nil || calls.Load() != 0 {
		t.Fatalf("condition false: %v, %d calls", err, calls.Load())
	}
	if err := e.d.Validate(ctx, e.snap(), e.attrs("default", map[string]string{"other": "1"}), nil); err == nil || calls.Load() != 1 {
		t.Fatalf("conditions true: %v, %d calls", err, calls.Load())
	}

	// An expression that does not compile: Fail refuses, Ignore skips.
	for _, fp := range []admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Fail, admissionregistrationv1.Ignore} {
		h := c.Webhooks[0]
		h.FailurePolicy = &fp
		h.MatchConditions = []admissionregistrationv1.MatchCondition{{Name: "broken", Expression: `object.metadata.nosuchfield ==`}}
		ok, err := e.d.conditionsMatch(ctx, e.attrs("default", nil), h.Name, h.MatchConditions, h.FailurePolicy, false)
		if fp == admissionregistrationv1.Fail && (err == nil || !apierrors.IsInternalError(err)) {
			t.Fatalf("broken condition, Fail: %v %v", ok, err)
		}
		if fp == admissionregistrationv1.Ignore && (err != nil || ok) {
			t.Fatalf("broken condition, Ignore: %v %v", ok, err)
		}
	}
}

func TestReinvocationNotForOwnChange(t *testing.T) {
	e := newEnv(t)
	var calls atomic.Int32
	url, ca := hookServer(t, func(r *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		calls.Add(1)
		return &admissionv1.AdmissionResponse{Allowed: true, PatchType: ptr(admissionv1.PatchTypeJSONPatch),
			Patch: []byte(`[{"op":"add","path":"/metadata/labels","value":{"only":"me"}}]`)}
	})
	e.create("mutatingwebhookconfigurations", admissionregistrationv1.GroupName, mutating("only", url, ca, admissionregistrationv1.IfNeededReinvocationPolicy))
	if err := e.d.Mutate(context.Background(), e.snap(), e.attrs("default", nil), nil); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("called %d times; its own change must not reinvoke it", n)
	}
}

func TestPatchMayNotRename(t *testing.T) {
	e := newEnv(t)
	url, ca := hookServer(t, func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return &admissionv1.AdmissionResponse{Allowed: true, PatchType: ptr(admissionv1.PatchTypeJSONPatch),
			Patch: []byte(`[{"op":"replace","path":"/metadata/name","value":"other"}]`)}
	})
	e.create("mutatingwebhookconfigurations", admissionregistrationv1.GroupName, mutating("rename", url, ca, admissionregistrationv1.NeverReinvocationPolicy))
	a := e.attrs("default", nil)
	if err := e.d.Mutate(context.Background(), e.snap(), a, nil); !apierrors.IsInternalError(err) || a.Object.(*corev1.ConfigMap).Name != "cm" {
		t.Fatalf("rename: %v, name %s", err, a.Object.(*corev1.ConfigMap).Name)
	}
}

// TestDenialStatusAsKubeAPIServer: a denial reaches the client as
// kube-apiserver's ToStatusErr makes it: the webhook's message, else its
// reason (agnhost's attach denial sets only the reason), after "admission
// webhook … denied the request: "; its code when 400 or more, else 400.
func TestDenialStatusAsKubeAPIServer(t *testing.T) {
	for name, tc := range map[string]struct {
		result   *metav1.Status
		code     int32
		contains string
	}{
		"reason only":  {&metav1.Status{Reason: "attaching to pod 'to-be-attached-pod' is not allowed"}, 400, `denied the request: attaching to pod 'to-be-attached-pod' is not allowed`},
		"message":      {&metav1.Status{Message: "the pod contains unwanted label", Code: 403, Reason: metav1.StatusReasonForbidden}, 403, `denied the request: the pod contains unwanted label`},
		"code too low": {&metav1.Status{Message: "no", Code: 200}, 400, `denied the request: no`},
		"nothing":      {nil, 400, `denied the request without explanation`},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			url, ca := hookServer(t, func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
				return &admissionv1.AdmissionResponse{Allowed: false, Result: tc.result}
			})
			e.create("validatingwebhookconfigurations", admissionregistrationv1.GroupName, validating("deny", url, ca, admissionregistrationv1.Fail, 5))
			err := e.d.Validate(context.Background(), e.snap(), e.attrs("default", nil), nil)
			var st apierrors.APIStatus
			if !errors.As(err, &st) || st.Status().Code != tc.code || st.Status().Status != metav1.StatusFailure ||
				!strings.Contains(st.Status().Message, `admission webhook "deny.example.com" `+tc.contains) {
				t.Fatalf("denial: %v (%+v), want code %d and %q", err, st, tc.code, tc.contains)
			}
		})
	}
}
