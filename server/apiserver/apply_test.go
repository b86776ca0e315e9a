package apiserver_test

import (
	"encoding/json"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
	"github.com/skiff-io/skiff/server/registry"
)

const applyYAML = "application/apply-patch+yaml"

const deploymentPath = "/apis/apps/v1/namespaces/default/deployments/web"

func deploymentYAML(replicas int, image string) []byte {
	return []byte(strings.NewReplacer("REPLICAS", string(rune('0'+replicas)), "IMAGE", image).Replace(`
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: IMAGE
        ports:
        - {containerPort: 53, protocol: TCP}
        - {containerPort: 53, protocol: UDP}
      - name: side
        image: busybox
`))
}

// managers returns "manager/operation/subresource" of each managedFields
// entry of a JSON object, checking each has a time and fields.
func managers(t *testing.T, body []byte) map[string]metav1.ManagedFieldsEntry {
	t.Helper()
	var obj struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(body, &obj); err != nil {
		t.Fatalf("decode: %v: %s", err, body)
	}
	out := map[string]metav1.ManagedFieldsEntry{}
	for _, e := range obj.Metadata.ManagedFields {
		if e.Time == nil || e.FieldsV1 == nil || e.FieldsType != "FieldsV1" || e.APIVersion == "" {
			t.Fatalf("incomplete managedFields entry %+v", e)
		}
		key := e.Manager + "/" + string(e.Operation)
		if e.Subresource != "" {
			key += "/" + e.Subresource
		}
		out[key] = e
	}
	return out
}

func owns(e metav1.ManagedFieldsEntry, field string) bool {
	return e.FieldsV1 != nil && strings.Contains(string(e.FieldsV1.Raw), field)
}

// TestServerSideApply: apply creates, updates, answers 409 naming the
// other manager and field, force moves the field, dryRun changes nothing,
// and associative lists with several keys (ports by containerPort and
// protocol) are not taken for duplicates.
func TestServerSideApply(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	patch := func(path, query string, body []byte) rawResponse {
		return e.do("PATCH", path+query, applyYAML, body)
	}

	// A missing fieldManager: 422 as kube-apiserver.
	st := patch(deploymentPath, "", deploymentYAML(1, "nginx")).status(t, 422, metav1.StatusReasonInvalid)
	if f := causes(t, st); len(f) != 1 || f[0] != "fieldManager" {
		t.Fatalf("causes %v", f)
	}

	// dryRun: the answer is the object, nothing is stored.
	if r := patch(deploymentPath, "?fieldManager=alice&dryRun=All", deploymentYAML(1, "nginx")); r.code != 201 {
		t.Fatalf("dry-run apply: %d %s", r.code, r.body)
	}
	if r := e.do("GET", deploymentPath, "", nil); r.code != 404 {
		t.Fatalf("after dry-run apply: GET %d %s", r.code, r.body)
	}

	// Create.
	r := patch(deploymentPath, "?fieldManager=alice", deploymentYAML(1, "nginx"))
	if r.code != 201 {
		t.Fatalf("apply create: %d %s", r.code, r.body)
	}
	m := managers(t, r.body)
	if a, ok := m["alice/Apply"]; !ok || len(m) != 1 || !owns(a, `"f:replicas"`) || !owns(a, `"k:{\"containerPort\":53,\"protocol\":\"UDP\"}"`) {
		t.Fatalf("managedFields after apply create: %v", m)
	}
	var d appsv1.Deployment
	if err := json.Unmarshal(r.body, &d); err != nil || *d.Spec.Replicas != 1 || len(d.Spec.Template.Spec.Containers[0].Ports) != 2 {
		t.Fatalf("created %v: %s", err, r.body)
	}

	// Update by the same manager.
	r = patch(deploymentPath, "?fieldManager=alice", deploymentYAML(2, "nginx:2"))
	if r.code != 200 {
		t.Fatalf("apply update: %d %s", r.code, r.body)
	}
	if err := json.Unmarshal(r.body, &d); err != nil || *d.Spec.Replicas != 2 || d.Spec.Template.Spec.Containers[0].Image != "nginx:2" {
		t.Fatalf("updated %v: %s", err, r.body)
	}

	// A second manager setting the same fields to other values: 409
	// naming the fields and alice; nothing changes.
	bob := []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":3}}`)
	st = patch(deploymentPath, "?fieldManager=bob", bob).status(t, 409, metav1.StatusReasonConflict)
	if st.Details == nil || len(st.Details.Causes) != 1 {
		t.Fatalf("conflict without causes: %+v", st)
	}
	c := st.Details.Causes[0]
	if c.Type != metav1.CauseTypeFieldManagerConflict || c.Field != ".spec.replicas" || !strings.Contains(c.Message, `"alice"`) || !strings.Contains(st.Message, "alice") {
		t.Fatalf("conflict cause %+v, message %q", c, st.Message)
	}
	// The same value is shared, not a conflict.
	if r := patch(deploymentPath, "?fieldManager=carol", []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":2}}`)); r.code != 200 {
		t.Fatalf("apply of the same value: %d %s", r.code, r.body)
	}

	// force: bob takes spec.replicas from alice (and carol).
	r = patch(deploymentPath, "?fieldManager=bob&force=true", bob)
	if r.code != 200 {
		t.Fatalf("forced apply: %d %s", r.code, r.body)
	}
	m = managers(t, r.body)
	if !owns(m["bob/Apply"], `"f:replicas"`) || owns(m["alice/Apply"], `"f:replicas"`) || !owns(m["alice/Apply"], `"f:template"`) {
		t.Fatalf("managedFields after force: %v", m)
	}
	if err := json.Unmarshal(r.body, &d); err != nil || *d.Spec.Replicas != 3 {
		t.Fatalf("forced %v: %s", err, r.body)
	}

	// A write through /scale is recorded as an Update of spec.replicas.
	if r := e.do("PATCH", deploymentPath+"/scale?fieldManager=scaler", "application/merge-patch+json", []byte(`{"spec":{"replicas":4}}`)); r.code != 200 {
		t.Fatalf("scale: %d %s", r.code, r.body)
	}
	r = e.do("GET", deploymentPath, "", nil)
	if m := managers(t, r.body); !owns(m["scaler/Update/scale"], `"f:replicas"`) || owns(m["bob/Apply"], `"f:replicas"`) {
		t.Fatalf("managedFields after scale: %s", r.body)
	}

	// force on a non-apply patch, an apply of another kind, the wrong
	// name: kube-apiserver's errors.
	e.do("PATCH", deploymentPath+"?force=true", "application/merge-patch+json", []byte(`{}`)).status(t, 422, metav1.StatusReasonInvalid)
	patch(deploymentPath, "?fieldManager=x", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web"}}`)).status(t, 400, metav1.StatusReasonBadRequest)
	patch(deploymentPath, "?fieldManager=x", []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"other"}}`)).status(t, 400, metav1.StatusReasonBadRequest)

	// A Service with one port for TCP and UDP, and a ConfigMap, through
	// client-go's typed apply.
	svc := []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"dns"},"spec":{"selector":{"app":"dns"},"ports":[{"name":"tcp","port":53,"protocol":"TCP"},{"name":"udp","port":53,"protocol":"UDP"}]}}`)
	if r := patch("/api/v1/namespaces/default/services/dns", "?fieldManager=alice", svc); r.code != 201 {
		t.Fatalf("apply service: %d %s", r.code, r.body)
	}
	cms := e.cs.CoreV1().ConfigMaps("default")
	cm, err := cms.Apply(e.ctx, corev1ac.ConfigMap("conf", "default").WithData(map[string]string{"a": "1"}), metav1.ApplyOptions{FieldManager: "alice"})
	if err != nil || cm.Data["a"] != "1" {
		t.Fatalf("client-go apply: %v %v", err, cm)
	}
	_, err = cms.Apply(e.ctx, corev1ac.ConfigMap("conf", "default").WithData(map[string]string{"a": "2"}), metav1.ApplyOptions{FieldManager: "bob"})
	if !apierrors.IsConflict(err) {
		t.Fatalf("client-go conflicting apply: %v", err)
	}
	cm, err = cms.Apply(e.ctx, corev1ac.ConfigMap("conf", "default").WithData(map[string]string{"a": "2"}), metav1.ApplyOptions{FieldManager: "bob", Force: true})
	if err != nil || cm.Data["a"] != "2" {
		t.Fatalf("client-go forced apply: %v %v", err, cm)
	}
	// Applying without a field alice applied removes it (alice's "b").
	if _, err := cms.Apply(e.ctx, corev1ac.ConfigMap("conf", "default").WithData(map[string]string{"b": "x"}), metav1.ApplyOptions{FieldManager: "carol"}); err != nil {
		t.Fatal(err)
	}
	cm, err = cms.Apply(e.ctx, corev1ac.ConfigMap("conf", "default").WithData(map[string]string{}), metav1.ApplyOptions{FieldManager: "carol"})
	if err != nil || cm.Data["a"] != "2" || cm.Data["b"] != "" {
		t.Fatalf("apply removing carol's field: %v %v", err, cm.Data)
	}

	// A Pod, then its status applied by a kubelet-like manager.
	pod := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox","ports":[{"containerPort":53,"protocol":"TCP"},{"containerPort":53,"protocol":"UDP"}]}]}}`)
	if r := patch("/api/v1/namespaces/default/pods/p", "?fieldManager=alice", pod); r.code != 201 {
		t.Fatalf("apply pod: %d %s", r.code, r.body)
	}
	r = patch("/api/v1/namespaces/default/pods/p/status", "?fieldManager=kubelet", []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"status":{"phase":"Running"}}`))
	if r.code != 200 {
		t.Fatalf("apply pod status: %d %s", r.code, r.body)
	}
	if m := managers(t, r.body); !owns(m["kubelet/Apply/status"], `"f:phase"`) || m["alice/Apply"].FieldsV1 == nil {
		t.Fatalf("managedFields after status apply: %s", r.body)
	}
}

// TestManagedFieldsOnWrites: every write records its manager's fields —
// from fieldManager, or the user agent's first segment — with operation
// Update, and the subresource for /status writes; objects stored without
// managedFields keep working.
func TestManagedFieldsOnWrites(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	const path = "/api/v1/namespaces/default/configmaps"
	r := e.do("POST", path+"?fieldManager=creator", "application/json", []byte(`{"metadata":{"name":"c"},"data":{"a":"1"}}`))
	if r.code != 201 {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	if m := managers(t, r.body); len(m) != 1 || !owns(m["creator/Update"], `"f:a"`) {
		t.Fatalf("after create: %v", m)
	}
	r = e.do("POST", path, "application/json", []byte(`{"metadata":{"name":"ua"},"data":{"a":"1"}}`), "User-Agent", "mytool/1.2 (linux/amd64)")
	if m := managers(t, r.body); r.code != 201 || len(m) != 1 || m["mytool/Update"].FieldsV1 == nil {
		t.Fatalf("create with a user agent: %d %v", r.code, m)
	}
	r = e.do("PUT", path+"/c?fieldManager=updater", "application/json", []byte(`{"metadata":{"name":"c"},"data":{"a":"1","b":"2"}}`))
	if m := managers(t, r.body); r.code != 200 || !owns(m["updater/Update"], `"f:b"`) || owns(m["updater/Update"], `"f:a"`) || !owns(m["creator/Update"], `"f:a"`) {
		t.Fatalf("after update: %d %v", r.code, m)
	}
	for _, p := range []struct{ manager, ct, body, field string }{
		{"merger", "application/merge-patch+json", `{"data":{"m":"1"}}`, `"f:m"`},
		{"strategic", "application/strategic-merge-patch+json", `{"data":{"s":"1"}}`, `"f:s"`},
		{"jsonpatch", "application/json-patch+json", `[{"op":"add","path":"/data/j","value":"1"}]`, `"f:j"`},
	} {
		r = e.do("PATCH", path+"/c?fieldManager="+p.manager, p.ct, []byte(p.body))
		if m := managers(t, r.body); r.code != 200 || !owns(m[p.manager+"/Update"], p.field) {
			t.Fatalf("after %s patch: %d %v", p.ct, r.code, m)
		}
	}
	// A manager taking over a field another applied.
	r = e.do("PATCH", path+"/c?fieldManager=merger", "application/merge-patch+json", []byte(`{"data":{"a":"9"}}`))
	if m := managers(t, r.body); r.code != 200 || !owns(m["merger/Update"], `"f:a"`) || owns(m["creator/Update"], `"f:a"`) {
		t.Fatalf("after a patch of another manager's field: %d %v", r.code, m)
	}
	// An invalid fieldManager: 422.
	e.do("POST", path+"?fieldManager="+strings.Repeat("x", 129), "application/json", []byte(`{"metadata":{"name":"d"}}`)).status(t, 422, metav1.StatusReasonInvalid)

	// A status update records the subresource.
	pods := e.cs.CoreV1().Pods("default")
	pod, err := pods.Create(e.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{FieldManager: "maker"})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod, err = pods.UpdateStatus(e.ctx, pod, metav1.UpdateOptions{FieldManager: "kubelet"})
	if err != nil {
		t.Fatal(err)
	}
	var status metav1.ManagedFieldsEntry
	for _, f := range pod.ManagedFields {
		if f.Manager == "kubelet" {
			status = f
		}
	}
	if status.Subresource != "status" || status.Operation != metav1.ManagedFieldsOperationUpdate || !owns(status, `"f:phase"`) {
		t.Fatalf("status managedFields: %+v", pod.ManagedFields)
	}

	// An object stored before managedFields were recorded: updates and
	// patches work and, as kube-apiserver's, leave it untracked; the first
	// apply gives its fields to "before-first-apply".
	kind, ok := registry.New().Lookup("", "v1", "configmaps")
	if !ok {
		t.Fatal("no configmaps kind")
	}
	data, err := kind.Encode(&corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "old", Namespace: "default", UID: types.UID("old-uid")},
		Data:       map[string]string{"a": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	entry, err := fsm.EncodeMutation(fsm.Mutation{Op: fsm.OpCreate, Key: kind.Key("default", "old"), UID: "old-uid", Object: data})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := e.srv.Store.Apply(e.ctx, entry); err != nil || res.Err != nil {
		t.Fatalf("store: %v %v", err, res)
	}
	r = e.do("PATCH", path+"/old?fieldManager=merger", "application/merge-patch+json", []byte(`{"data":{"b":"2"}}`))
	if m := managers(t, r.body); r.code != 200 || len(m) != 0 {
		t.Fatalf("patch of an old object: %d %v", r.code, m)
	}
	r = e.do("PATCH", path+"/old?fieldManager=applier", applyYAML, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"old"},"data":{"c":"3"}}`))
	if m := managers(t, r.body); r.code != 200 || !owns(m["applier/Apply"], `"f:c"`) || !owns(m["before-first-apply/Update"], `"f:b"`) {
		t.Fatalf("apply to an old object: %d %s", r.code, r.body)
	}
}
