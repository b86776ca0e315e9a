package apiserver_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// causes returns the fields of a 422's causes.
func causes(t *testing.T, st metav1.Status) []string {
	t.Helper()
	if st.Details == nil {
		t.Fatalf("422 without details: %+v", st)
	}
	var out []string
	for _, c := range st.Details.Causes {
		out = append(out, c.Field)
	}
	return out
}

// TestAccessReviewsAPI: the reviews are create-only, answered from the
// authorizer, validated with kube-apiserver's rules (422 with field
// causes), and have no Table form (406, as the conformance test "should
// return a 406 for a backend which does not implement metadata").
func TestAccessReviewsAPI(t *testing.T) {
	authz := &apiservertest.FakeAuthorizer{Deny: func(u *authUser, a authAttributes) string {
		if a.Resource == "secrets" || (u.Name == "bob" && a.Resource == "pods") {
			return "no"
		}
		return ""
	}}
	e := newEnv(t, apiservertest.Options{Authorizer: authz})
	const ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
	post := func(path, body string, header ...string) rawResponse {
		return e.do("POST", path, "application/json", []byte(body), header...)
	}
	review := func(path, body string) authorizationv1.SubjectAccessReviewStatus {
		t.Helper()
		r := post(path, body)
		var out struct {
			Kind   string                                    `json:"kind"`
			Status authorizationv1.SubjectAccessReviewStatus `json:"status"`
		}
		if r.code != 201 || json.Unmarshal(r.body, &out) != nil || out.Kind == "" {
			t.Fatalf("POST %s: %d %s", path, r.code, r.body)
		}
		return out.Status
	}
	if st := review(ssar, `{"spec":{"resourceAttributes":{"verb":"get","resource":"pods","namespace":"default"}}}`); !st.Allowed {
		t.Fatalf("SSAR get pods: %+v", st)
	}
	if st := review(ssar, `{"spec":{"resourceAttributes":{"verb":"get","resource":"secrets","namespace":"default"}}}`); st.Allowed {
		t.Fatalf("SSAR get secrets: %+v", st)
	}
	if st := review(ssar, `{"spec":{"nonResourceAttributes":{"verb":"get","path":"/healthz"}}}`); !st.Allowed {
		t.Fatalf("SSAR get /healthz: %+v", st)
	}
	const sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
	if st := review(sar, `{"spec":{"user":"bob","resourceAttributes":{"verb":"list","resource":"pods"}}}`); st.Allowed {
		t.Fatalf("SAR bob list pods: %+v", st)
	}
	if st := review(sar, `{"spec":{"user":"alice","resourceAttributes":{"verb":"list","resource":"pods"}}}`); !st.Allowed {
		t.Fatalf("SAR alice list pods: %+v", st)
	}

	// Neither attribute kind, both, no subject: 422 naming the fields.
	st := post(ssar, `{"spec":{}}`).status(t, 422, metav1.StatusReasonInvalid)
	if f := causes(t, st); len(f) != 1 || f[0] != "spec.resourceAttributes" {
		t.Fatalf("SSAR without attributes: causes %v", f)
	}
	st = post(ssar, `{"spec":{"resourceAttributes":{"verb":"get"},"nonResourceAttributes":{"verb":"get","path":"/"}}}`).status(t, 422, metav1.StatusReasonInvalid)
	if f := causes(t, st); len(f) != 1 || f[0] != "spec.nonResourceAttributes" {
		t.Fatalf("SSAR with both attributes: causes %v", f)
	}
	st = post(sar, `{"spec":{"resourceAttributes":{"verb":"get"}}}`).status(t, 422, metav1.StatusReasonInvalid)
	if f := causes(t, st); len(f) != 1 || f[0] != "spec.user" {
		t.Fatalf("SAR without user: causes %v", f)
	}
	st = post(sar, `{"metadata":{"name":"x"},"spec":{"user":"u","resourceAttributes":{"verb":"get"}}}`).status(t, 422, metav1.StatusReasonInvalid)
	if f := causes(t, st); len(f) != 1 || f[0] != "metadata" {
		t.Fatalf("SAR with a name: causes %v", f)
	}

	// LocalSubjectAccessReview: the URL's namespace.
	const lsar = "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews"
	if st := review(lsar, `{"spec":{"user":"alice","resourceAttributes":{"namespace":"default","verb":"get","resource":"pods"}}}`); !st.Allowed {
		t.Fatalf("LSAR: %+v", st)
	}
	post(lsar, `{"metadata":{"namespace":"other"},"spec":{"user":"alice","resourceAttributes":{"namespace":"other","verb":"get"}}}`).status(t, 400, metav1.StatusReasonBadRequest)
	st = post(lsar, `{"spec":{"user":"alice","resourceAttributes":{"namespace":"other","verb":"get"}}}`).status(t, 422, metav1.StatusReasonInvalid)
	if f := causes(t, st); len(f) != 1 || f[0] != "spec.resourceAttributes.namespace" {
		t.Fatalf("LSAR of another namespace: causes %v", f)
	}

	// Rules review: a namespace is required.
	post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", `{"spec":{}}`).status(t, 400, metav1.StatusReasonBadRequest)

	// Create only; no Table form.
	e.do("GET", ssar, "", nil).status(t, 405, metav1.StatusReasonMethodNotAllowed)
	post(ssar, `{"spec":{"nonResourceAttributes":{"verb":"get","path":"/"}}}`, "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
		status(t, 406, metav1.StatusReasonNotAcceptable)
	if r := post(ssar, `{"spec":{"nonResourceAttributes":{"verb":"get","path":"/"}}}`, "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io, application/json"); r.code != 201 {
		t.Fatalf("SSAR with a JSON fallback: %d %s", r.code, r.body)
	}
}

// TestNotAcceptable: an Accept header naming only a form the server does
// not have is 406; a JSON fallback is served.
func TestNotAcceptable(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	e.do("GET", "/api/v1/namespaces/default/configmaps", "", nil, "Accept", "application/json;as=Foo;g=meta.k8s.io;v=v1").
		status(t, 406, metav1.StatusReasonNotAcceptable)
	if r := e.do("GET", "/api/v1/namespaces/default/configmaps", "", nil, "Accept", "application/json;as=Foo;g=meta.k8s.io;v=v1,application/json"); r.code != 200 ||
		!strings.Contains(string(r.body), `"kind":"ConfigMapList"`) {
		t.Fatalf("with a JSON fallback: %d %s", r.code, r.body)
	}
}

// TestRoleRefAPIGroupDefaulted: an empty roleRef.apiGroup (and a User or
// Group subject's) is rbac.authorization.k8s.io, as kube-apiserver
// defaults it.
func TestRoleRefAPIGroupDefaulted(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	rb, err := e.cs.RbacV1().RoleBindings("default").Create(e.ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "rb"},
		RoleRef:  rbacv1.RoleRef{Kind: "ClusterRole", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "alice"}, {Kind: "ServiceAccount", Name: "robot", Namespace: "default"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("RoleBinding without roleRef.apiGroup: %v", err)
	}
	if rb.RoleRef.APIGroup != rbacv1.GroupName || rb.Subjects[0].APIGroup != rbacv1.GroupName || rb.Subjects[1].APIGroup != "" {
		t.Fatalf("not defaulted: %+v %+v", rb.RoleRef, rb.Subjects)
	}
	crb, err := e.cs.RbacV1().ClusterRoleBindings().Create(e.ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "crb"},
		RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "view"}, Subjects: []rbacv1.Subject{{Kind: "Group", Name: "g"}}}, metav1.CreateOptions{})
	if err != nil || crb.RoleRef.APIGroup != rbacv1.GroupName || crb.Subjects[0].APIGroup != rbacv1.GroupName {
		t.Fatalf("ClusterRoleBinding without roleRef.apiGroup: %+v, %v", crb, err)
	}
	// Another group is still refused.
	_, err = e.cs.RbacV1().ClusterRoleBindings().Create(e.ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		RoleRef: rbacv1.RoleRef{APIGroup: "example.com", Kind: "ClusterRole", Name: "view"}}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("roleRef.apiGroup example.com: %v", err)
	}
}

// TestSysctlValidation: the conformance test "should reject invalid
// sysctls": malformed names are 422 naming each field; well-formed ones,
// safe or not, pass the API (the kubelet decides about unsafe ones).
func TestSysctlValidation(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	pod := func(name string, hostNetwork bool, sysctls ...corev1.Sysctl) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{HostNetwork: hostNetwork,
			SecurityContext: &corev1.PodSecurityContext{Sysctls: sysctls},
			Containers:      []corev1.Container{{Name: "c", Image: "busybox"}}}}
	}
	_, err := e.cs.CoreV1().Pods("default").Create(e.ctx, pod("bad", false,
		corev1.Sysctl{Name: "foo-", Value: "bar"}, corev1.Sysctl{Name: "kernel.shmmax", Value: "100000000"},
		corev1.Sysctl{Name: "safe-and-unsafe", Value: "100000000"}, corev1.Sysctl{Name: "bar..", Value: "42"}), metav1.CreateOptions{})
	var se *apierrors.StatusError
	if !apierrors.IsInvalid(err) || !errorsAs(err, &se) {
		t.Fatalf("invalid sysctls: %v, want 422", err)
	}
	msg := err.Error()
	for _, want := range []string{`Invalid value: "foo-"`, `Invalid value: "bar.."`} {
		if !strings.Contains(msg, want) {
			t.Errorf("no %q in %s", want, msg)
		}
	}
	if strings.Contains(msg, "safe-and-unsafe") || strings.Contains(msg, "kernel.shmmax") {
		t.Errorf("valid names reported: %s", msg)
	}
	if f := causes(t, se.ErrStatus); len(f) != 2 || f[0] != "spec.securityContext.sysctls[0].name" || f[1] != "spec.securityContext.sysctls[3].name" {
		t.Errorf("causes %v", f)
	}
	// Duplicates, and a net sysctl with the host's network.
	_, err = e.cs.CoreV1().Pods("default").Create(e.ctx, pod("dup", false,
		corev1.Sysctl{Name: "kernel.shm_rmid_forced", Value: "1"}, corev1.Sysctl{Name: "kernel.shm_rmid_forced", Value: "0"}), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "Duplicate value") {
		t.Errorf("duplicate sysctl: %v", err)
	}
	_, err = e.cs.CoreV1().Pods("default").Create(e.ctx, pod("hostnet", true, corev1.Sysctl{Name: "net.ipv4.tcp_syncookies", Value: "1"}), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "hostNetwork") {
		t.Errorf("net sysctl with hostNetwork: %v", err)
	}
	if _, err := e.cs.CoreV1().Pods("default").Create(e.ctx, pod("good", false,
		corev1.Sysctl{Name: "kernel.shm_rmid_forced", Value: "1"}, corev1.Sysctl{Name: "net/ipv4/ip_local_port_range", Value: "1024 65535"}), metav1.CreateOptions{}); err != nil {
		t.Errorf("valid sysctls: %v", err)
	}
}

// TestLimitRangeDefaults: the conformance test "LimitRange should create a
// LimitRange with defaults and ensure pod has those defaults applied": a
// container's limit without a request requests the limit (API defaulting,
// before LimitRanger), and a LimitRange's missing defaults come from its
// max and min.
func TestLimitRangeDefaults(t *testing.T) {
	e := newEnv(t, apiservertest.Options{Admission: true})
	if _, err := e.cs.CoreV1().ServiceAccounts("default").Create(e.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rl := func(cpu, mem, eph string) corev1.ResourceList {
		l := corev1.ResourceList{}
		for name, v := range map[corev1.ResourceName]string{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem, corev1.ResourceEphemeralStorage: eph} {
			if v != "" {
				l[name] = resource.MustParse(v)
			}
		}
		return l
	}
	_, err := e.cs.CoreV1().LimitRanges("default").Create(e.ctx, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "limits"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
			Min: rl("50m", "100Mi", "100Gi"), Max: rl("500m", "500Mi", "500Gi"),
			Default: rl("500m", "500Mi", "500Gi"), DefaultRequest: rl("100m", "200Mi", "200Gi")}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	create := func(name string, req, lim corev1.ResourceList) corev1.ResourceRequirements {
		t.Helper()
		p, err := e.cs.CoreV1().Pods("default").Create(e.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause",
				Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return p.Spec.Containers[0].Resources
	}
	same := func(what string, got, want corev1.ResourceList) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
		for k, v := range want {
			if q, ok := got[k]; !ok || q.Cmp(v) != 0 {
				t.Errorf("%s %s: %v, want %v", what, k, got[k], v)
			}
		}
	}
	r := create("pod-no-resources", nil, nil)
	same("no resources: requests", r.Requests, rl("100m", "200Mi", "200Gi"))
	same("no resources: limits", r.Limits, rl("500m", "500Mi", "500Gi"))
	r = create("pod-partial-resources", rl("", "150Mi", "150Gi"), rl("300m", "", ""))
	same("partial: requests", r.Requests, rl("300m", "150Mi", "150Gi"))
	same("partial: limits", r.Limits, rl("300m", "500Mi", "500Gi"))

	// A LimitRange's own defaults: default from max, defaultRequest from
	// default, else from min.
	lr, err := e.cs.CoreV1().LimitRanges("default").Create(e.ctx, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "partial"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
			Min: rl("", "10Mi", ""), Max: rl("1", "", "")}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	same("limitrange default", lr.Spec.Limits[0].Default, rl("1", "", ""))
	same("limitrange defaultRequest", lr.Spec.Limits[0].DefaultRequest, rl("1", "10Mi", ""))
}

func errorsAs(err error, se **apierrors.StatusError) bool { return errors.As(err, se) }

// TestRuntimeClassAdmission: the conformance tests "should reject a Pod
// requesting a non-existent RuntimeClass" and "should schedule a Pod
// requesting a RuntimeClass and initialize its Overhead": a pod's
// RuntimeClass must exist, and gives it its overhead, node selector and
// tolerations.
func TestRuntimeClassAdmission(t *testing.T) {
	e := newEnv(t, apiservertest.Options{Admission: true})
	if _, err := e.cs.CoreV1().ServiceAccounts("default").Create(e.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tol := corev1.Toleration{Key: "sandboxed", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	_, err := e.cs.NodeV1().RuntimeClasses().Create(e.ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "gvisor"}, Handler: "runsc",
		Overhead:   &nodev1.Overhead{PodFixed: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}},
		Scheduling: &nodev1.Scheduling{NodeSelector: map[string]string{"sandbox": "yes"}, Tolerations: []corev1.Toleration{tol}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.NodeV1().RuntimeClasses().Create(e.ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Handler: "Not_A_Label"}, metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "handler") {
		t.Fatalf("RuntimeClass with an invalid handler: %v", err)
	}
	pod := func(name, rc string, sel map[string]string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{NodeSelector: sel,
			Containers: []corev1.Container{{Name: "c", Image: "pause"}}}}
		if rc != "" {
			p.Spec.RuntimeClassName = &rc
		}
		return p
	}
	_, err = e.cs.CoreV1().Pods("default").Create(e.ctx, pod("missing", "nope", nil), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `RuntimeClass "nope" not found`) {
		t.Fatalf("pod with a missing RuntimeClass: %v, want 403", err)
	}
	p, err := e.cs.CoreV1().Pods("default").Create(e.ctx, pod("sandboxed", "gvisor", map[string]string{"zone": "a"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if q := p.Spec.Overhead[corev1.ResourceCPU]; q.String() != "10m" || p.Spec.NodeSelector["sandbox"] != "yes" || p.Spec.NodeSelector["zone"] != "a" {
		t.Errorf("overhead %v, node selector %v", p.Spec.Overhead, p.Spec.NodeSelector)
	}
	found := false
	for _, x := range p.Spec.Tolerations {
		found = found || x == tol
	}
	if !found {
		t.Errorf("tolerations %v lack %v", p.Spec.Tolerations, tol)
	}
	_, err = e.cs.CoreV1().Pods("default").Create(e.ctx, pod("conflict", "gvisor", map[string]string{"sandbox": "no"}), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "conflict: runtimeClass.scheduling.nodeSelector[sandbox]") {
		t.Errorf("conflicting node selector: %v", err)
	}
	o := pod("overhead", "", nil)
	o.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	if _, err := e.cs.CoreV1().Pods("default").Create(e.ctx, o, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("overhead without a RuntimeClass: %v", err)
	}
}

// TestImpersonation: the Impersonate-* headers act as another user when
// the caller may "impersonate" each part, with kube-apiserver's implicit
// groups; otherwise 403 naming what, or 400 for groups without a user.
func TestImpersonation(t *testing.T) {
	authz := &apiservertest.FakeAuthorizer{Deny: func(u *authUser, a authAttributes) string {
		if a.Verb == "impersonate" && (a.Name == "root" || a.Name == "admins") {
			return "no"
		}
		return ""
	}}
	e := newEnv(t, apiservertest.Options{Authorizer: authz})
	whoami := func(header ...string) rawResponse {
		return e.do("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "application/json",
			[]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`), header...)
	}
	user := func(r rawResponse) (string, []string) {
		t.Helper()
		var out struct {
			Status struct {
				UserInfo struct {
					Username string   `json:"username"`
					Groups   []string `json:"groups"`
				} `json:"userInfo"`
			} `json:"status"`
		}
		if r.code != 201 || json.Unmarshal(r.body, &out) != nil {
			t.Fatalf("whoami: %d %s", r.code, r.body)
		}
		return out.Status.UserInfo.Username, out.Status.UserInfo.Groups
	}
	name, groups := user(whoami("Impersonate-User", "bob"))
	if name != "bob" || strings.Join(groups, ",") != "system:authenticated" {
		t.Errorf("as bob: %s %v", name, groups)
	}
	name, groups = user(whoami("Impersonate-User", "system:serviceaccount:team:robot"))
	if name != "system:serviceaccount:team:robot" || strings.Join(groups, ",") != "system:serviceaccounts,system:serviceaccounts:team,system:authenticated" {
		t.Errorf("as a service account: %s %v", name, groups)
	}
	found := false
	for _, a := range authz.Calls() {
		found = found || (a.Verb == "impersonate" && a.Resource == "serviceaccounts" && a.Namespace == "team" && a.Name == "robot")
	}
	if !found {
		t.Errorf("impersonating a service account was not authorized on serviceaccounts: %+v", authz.Calls())
	}
	r := e.do("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "application/json",
		[]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`), "Impersonate-User", "bob", "Impersonate-Group", "dev")
	if name, groups := user(r); name != "bob" || strings.Join(groups, ",") != "dev,system:authenticated" {
		t.Errorf("as bob in dev: %s %v", name, groups)
	}
	st := whoami("Impersonate-User", "root").status(t, 403, metav1.StatusReasonForbidden)
	if !strings.Contains(st.Message, `cannot impersonate resource "users"`) {
		t.Errorf("denied user: %s", st.Message)
	}
	st = whoami("Impersonate-User", "bob", "Impersonate-Group", "admins").status(t, 403, metav1.StatusReasonForbidden)
	if !strings.Contains(st.Message, `cannot impersonate resource "groups"`) {
		t.Errorf("denied group: %s", st.Message)
	}
	whoami("Impersonate-Group", "dev").status(t, 400, metav1.StatusReasonBadRequest)
}
