package apiserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/fsmtest"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/apiserver"
	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
	"github.com/skiff-io/skiff/server/auditlog"
)

// auditTestPolicy: Secrets at Metadata, ConfigMaps at Request, pods at
// RequestResponse, the rest at Metadata; every stage logged.
const auditTestPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  resources: [{group: "", resources: [secrets]}]
- level: Request
  resources: [{group: "", resources: [configmaps]}]
- level: RequestResponse
  resources: [{group: "", resources: [pods]}]
- level: None
  resources: [{group: "", resources: [namespaces]}]
- level: Metadata
`

// auditEnv is a test server writing its audit log to a file through the
// real log backend (blocking mode: an event is on disk when its stage is
// processed).
type auditEnv struct {
	*env
	path string
}

func newAuditEnv(t *testing.T, opts apiservertest.Options) *auditEnv {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(auditTestPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit", "audit.log")
	l, err := auditlog.Open(auditlog.Options{Path: path, PolicyFile: policy, Mode: auditlog.ModeBlocking}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Shutdown(); err != nil {
			t.Error(err)
		}
	})
	opts.AuditPolicy, opts.AuditSink = l.Policy(), l.Sink()
	return &auditEnv{env: newEnv(t, opts), path: path}
}

// events reads the audit log.
func (e *auditEnv) events() []auditv1.Event {
	e.t.Helper()
	b, err := os.ReadFile(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	var evs []auditv1.Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ev auditv1.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			e.t.Fatalf("audit line is not an Event: %v: %s", err, sc.Bytes())
		}
		if ev.Kind != "Event" || ev.APIVersion != "audit.k8s.io/v1" {
			e.t.Fatalf("audit line is %s %s", ev.APIVersion, ev.Kind)
		}
		evs = append(evs, ev)
	}
	return evs
}

// event waits for the event of stage that match says is the one.
func (e *auditEnv) event(what string, stage auditv1.Stage, match func(ev *auditv1.Event) bool) auditv1.Event {
	e.t.Helper()
	var found *auditv1.Event
	waitFor(e.t, what, func() bool {
		for _, ev := range e.events() {
			if ev.Stage == stage && match(&ev) {
				found = &ev
				return true
			}
		}
		return false
	})
	return *found
}

func objectIs(verb, resource, sub, name string) func(ev *auditv1.Event) bool {
	return func(ev *auditv1.Event) bool {
		r := ev.ObjectRef
		return ev.Verb == verb && r != nil && r.Resource == resource && r.Subresource == sub && r.Name == name
	}
}

// TestAuditLevels: each request is logged at the level the policy file
// gives it; a Secret's body never reaches the log, a ConfigMap's does at
// Request level whatever the media type it was sent in (the typed client
// sends protobuf), and RequestResponse keeps the response too.
func TestAuditLevels(t *testing.T) {
	e := newAuditEnv(t, apiservertest.Options{})
	const marker = "audit-marker-5f1d0c"

	if _, err := e.cs.CoreV1().Secrets("default").Create(e.ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "s1"},
		StringData: map[string]string{"password": marker},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := e.event("secret create", auditv1.StageResponseComplete, objectIs("create", "secrets", "", "s1"))
	if ev.Level != auditv1.LevelMetadata || ev.RequestObject != nil || ev.ResponseObject != nil {
		t.Errorf("secret create: level %s, requestObject %v, responseObject %v; want Metadata without bodies", ev.Level, ev.RequestObject, ev.ResponseObject)
	}
	if ev.ObjectRef.Namespace != "default" || ev.ObjectRef.APIVersion != "v1" || ev.ResponseStatus == nil || ev.ResponseStatus.Code != http.StatusCreated {
		t.Errorf("secret create: objectRef %+v, responseStatus %+v", ev.ObjectRef, ev.ResponseStatus)
	}
	if ev.User.Username != "test-admin" || len(ev.SourceIPs) == 0 || ev.UserAgent == "" || ev.AuditID == "" {
		t.Errorf("secret create: user %+v, sourceIPs %v, userAgent %q, auditID %q", ev.User, ev.SourceIPs, ev.UserAgent, ev.AuditID)
	}
	if ev.Annotations["authorization.k8s.io/decision"] != "allow" {
		t.Errorf("secret create: annotations %v", ev.Annotations)
	}
	// Both stages, one audit ID.
	e.event("secret create received", auditv1.StageRequestReceived, func(x *auditv1.Event) bool { return x.AuditID == ev.AuditID })
	if _, err := e.cs.CoreV1().Secrets("default").Get(e.ctx, "s1", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	e.event("secret get", auditv1.StageResponseComplete, objectIs("get", "secrets", "", "s1"))

	cm, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "c1"}, Data: map[string]string{"k": "v1"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["k"] = "updated-value"
	if _, err := e.cs.CoreV1().ConfigMaps("default").Update(e.ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev = e.event("configmap update", auditv1.StageResponseComplete, objectIs("update", "configmaps", "", "c1"))
	var sent corev1.ConfigMap
	if ev.Level != auditv1.LevelRequest || ev.RequestObject == nil || json.Unmarshal(ev.RequestObject.Raw, &sent) != nil ||
		sent.Kind != "ConfigMap" || sent.Data["k"] != "updated-value" {
		t.Errorf("configmap update: level %s, requestObject %v; want Request with the ConfigMap", ev.Level, ev.RequestObject)
	}
	if ev.ResponseObject != nil || ev.ResponseStatus == nil || ev.ResponseStatus.Code != http.StatusOK {
		t.Errorf("configmap update: responseObject %v, responseStatus %+v", ev.ResponseObject, ev.ResponseStatus)
	}
	if _, err := e.cs.CoreV1().ConfigMaps("default").Patch(e.ctx, "c1", types.MergePatchType,
		[]byte(`{"data":{"k":"patched"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	ev = e.event("configmap patch", auditv1.StageResponseComplete, objectIs("patch", "configmaps", "", "c1"))
	if ev.RequestObject == nil || string(ev.RequestObject.Raw) != `{"data":{"k":"patched"}}` {
		t.Errorf("configmap patch: requestObject %v; want the patch", ev.RequestObject)
	}

	if _, err := e.cs.CoreV1().Pods("default").Create(e.ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p1"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev = e.event("pod create", auditv1.StageResponseComplete, objectIs("create", "pods", "", "p1"))
	var created corev1.Pod
	if ev.Level != auditv1.LevelRequestResponse || ev.ResponseObject == nil || json.Unmarshal(ev.ResponseObject.Raw, &created) != nil || created.UID == "" {
		t.Errorf("pod create: level %s, responseObject %v; want RequestResponse with the created pod", ev.Level, ev.ResponseObject)
	}
	if ev.ObjectRef.UID != "" && ev.ObjectRef.UID != created.UID {
		t.Errorf("pod create: objectRef uid %s, pod %s", ev.ObjectRef.UID, created.UID)
	}

	// Namespaces are at None: not logged at all.
	for _, x := range e.events() {
		if x.ObjectRef != nil && x.ObjectRef.Resource == "namespaces" {
			t.Errorf("namespace request logged at None: %+v", x)
		}
	}
	b, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), marker) {
		t.Errorf("the Secret's value is in the audit log")
	}
}

// TestAuditIDAndFailures: the Audit-Id header names the request's events
// (the client's Audit-ID is kept); refused requests are audited too: 401
// without a user, 403 with the authorizer's reason, a failed write with
// its Status.
func TestAuditIDAndFailures(t *testing.T) {
	authz := &apiservertest.FakeAuthorizer{Deny: func(u *authUser, a authAttributes) string {
		if a.Resource == "configmaps" && a.Name == "forbidden" {
			return "no rule allows it"
		}
		return ""
	}}
	e := newAuditEnv(t, apiservertest.Options{Authorizer: authz})

	resp := e.do(http.MethodGet, "/api/v1/namespaces/default/configmaps/forbidden", "", nil)
	resp.status(t, http.StatusForbidden, metav1.StatusReasonForbidden)
	id := resp.header.Get("Audit-Id")
	if id == "" {
		t.Fatalf("no Audit-Id header: %v", resp.header)
	}
	ev := e.event("403", auditv1.StageResponseComplete, func(x *auditv1.Event) bool { return string(x.AuditID) == id })
	if ev.ResponseStatus == nil || ev.ResponseStatus.Code != http.StatusForbidden || ev.ResponseStatus.Reason != metav1.StatusReasonForbidden ||
		!strings.Contains(ev.ResponseStatus.Message, "no rule allows it") {
		t.Errorf("403: responseStatus %+v", ev.ResponseStatus)
	}
	if ev.Annotations["authorization.k8s.io/decision"] != "forbid" || ev.Annotations["authorization.k8s.io/reason"] != "no rule allows it" {
		t.Errorf("403: annotations %v", ev.Annotations)
	}
	if ev.User.Username != "test-admin" || ev.Verb != "get" || ev.ObjectRef == nil || ev.ObjectRef.Name != "forbidden" {
		t.Errorf("403: user %+v, verb %s, objectRef %+v", ev.User, ev.Verb, ev.ObjectRef)
	}

	resp = e.do(http.MethodGet, "/api/v1/namespaces/default/configmaps", "", nil, "Authorization", "Bearer wrong", "Audit-ID", "client-chosen-id")
	resp.status(t, http.StatusUnauthorized, metav1.StatusReasonUnauthorized)
	if got := resp.header.Get("Audit-Id"); got != "client-chosen-id" {
		t.Errorf("Audit-Id %q, want the client's", got)
	}
	ev = e.event("401", auditv1.StageResponseComplete, func(x *auditv1.Event) bool { return x.AuditID == "client-chosen-id" })
	if ev.ResponseStatus == nil || ev.ResponseStatus.Code != http.StatusUnauthorized ||
		ev.ResponseStatus.Message != "Authentication failed, attempted: bearer" || ev.User.Username != "" {
		t.Errorf("401: responseStatus %+v, user %+v", ev.ResponseStatus, ev.User)
	}

	body := mustJSON(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dup"}})
	e.do(http.MethodPost, "/api/v1/namespaces/default/configmaps", "application/json", body)
	resp = e.do(http.MethodPost, "/api/v1/namespaces/default/configmaps", "application/json", body)
	resp.status(t, http.StatusConflict, metav1.StatusReasonAlreadyExists)
	id = resp.header.Get("Audit-Id")
	ev = e.event("409", auditv1.StageResponseComplete, func(x *auditv1.Event) bool { return string(x.AuditID) == id })
	if ev.ResponseStatus == nil || ev.ResponseStatus.Code != http.StatusConflict || ev.ResponseStatus.Reason != metav1.StatusReasonAlreadyExists ||
		ev.ObjectRef == nil || ev.ObjectRef.Name != "dup" || ev.RequestObject == nil {
		t.Errorf("409: objectRef %+v, responseStatus %+v, requestObject %v", ev.ObjectRef, ev.ResponseStatus, ev.RequestObject)
	}
}

// TestAuditWatch: a watch is logged when its response starts and when it
// ends.
func TestAuditWatch(t *testing.T) {
	e := newAuditEnv(t, apiservertest.Options{})
	resp := e.do(http.MethodGet, "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1", "", nil)
	if resp.code != http.StatusOK {
		t.Fatalf("watch: %d %s", resp.code, resp.body)
	}
	id := types.UID(resp.header.Get("Audit-Id"))
	started := e.event("watch started", auditv1.StageResponseStarted, func(x *auditv1.Event) bool { return x.AuditID == id })
	done := e.event("watch done", auditv1.StageResponseComplete, func(x *auditv1.Event) bool { return x.AuditID == id })
	if started.Verb != "watch" || started.ResponseStatus == nil || started.ResponseStatus.Code != http.StatusOK ||
		done.StageTimestamp.Before(&started.StageTimestamp) {
		t.Errorf("watch: started %+v, done %+v", started, done)
	}
}

// panickyStore panics on every read, as a bug in a handler would.
type panickyStore struct{ *fsmtest.FakeRaftStore }

func (panickyStore) Read(context.Context, bool, uint64) (*state.Snapshot, error) {
	panic("read exploded")
}

// TestAuditPanic: a handler that panics leaves a Panic event with a 500
// Status naming the panic; the panic still reaches net/http.
func TestAuditPanic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := auditlog.Open(auditlog.Options{Path: path, Mode: auditlog.ModeBlocking}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Shutdown() })
	api, err := apiserver.New(apiserver.Config{
		Store:         panickyStore{fsmtest.NewFakeRaftStore(fsm.Options{})},
		Authenticator: &apiservertest.FakeAuthenticator{},
		Authorizer:    &apiservertest.FakeAuthorizer{},
		AuditPolicy:   l.Policy(),
		AuditSink:     l.Sink(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(api)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the panic's stack
	t.Cleanup(ts.Close)
	if resp, err := ts.Client().Get(ts.URL + "/api/v1/namespaces/default/configmaps/c1"); err == nil {
		resp.Body.Close()
		t.Fatalf("the panic did not reach net/http: %d", resp.StatusCode)
	}
	e := &auditEnv{env: &env{t: t}, path: path}
	ev := e.event("panic", auditv1.StagePanic, objectIs("get", "configmaps", "", "c1"))
	if ev.ResponseStatus == nil || ev.ResponseStatus.Code != http.StatusInternalServerError ||
		!strings.Contains(ev.ResponseStatus.Message, "read exploded") {
		t.Errorf("panic: responseStatus %+v", ev.ResponseStatus)
	}
}
