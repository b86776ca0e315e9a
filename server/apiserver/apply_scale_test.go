package apiserver_test

import (
	"encoding/json"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestScaleApplyAndOwnership: writes of the scale subresource move the
// ownership of spec.replicas in the object's managedFields as on
// kube-apiserver: a server-side apply of a Scale conflicts with the
// object's applier, force takes the field, and a PUT of the Scale by
// another manager (an autoscaler) takes it from the applier in turn.
func TestScaleApplyAndOwnership(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	scalePath := deploymentPath + "/scale"
	if r := e.do("PATCH", deploymentPath+"?fieldManager=alice", applyYAML, deploymentYAML(1, "nginx")); r.code != 201 {
		t.Fatalf("apply create: %d %s", r.code, r.body)
	}
	scale := func(n string) []byte {
		return []byte(`{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"web"},"spec":{"replicas":` + n + `}}`)
	}

	// bob's apply of the Scale conflicts with alice, who applied
	// spec.replicas on the Deployment.
	st := e.do("PATCH", scalePath+"?fieldManager=bob", applyYAML, scale("3")).status(t, 409, metav1.StatusReasonConflict)
	if st.Details == nil || len(st.Details.Causes) != 1 || st.Details.Causes[0].Field != ".spec.replicas" || !strings.Contains(st.Message, "alice") {
		t.Fatalf("conflict %+v", st)
	}

	// A Scale apply of another kind, or of another object's name: 400.
	e.do("PATCH", scalePath+"?fieldManager=bob", applyYAML, []byte(`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replicas":3}}`)).status(t, 400, metav1.StatusReasonBadRequest)
	e.do("PATCH", scalePath+"?fieldManager=bob", applyYAML, []byte(`{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"other"},"spec":{"replicas":3}}`)).status(t, 400, metav1.StatusReasonBadRequest)

	// force: bob owns the replicas, through the scale subresource.
	r := e.do("PATCH", scalePath+"?fieldManager=bob&force=true", applyYAML, scale("3"))
	if r.code != 200 || !strings.Contains(string(r.body), `"replicas":3`) || !strings.Contains(string(r.body), `"kind":"Scale"`) {
		t.Fatalf("forced scale apply: %d %s", r.code, r.body)
	}
	get := func() (appsv1.Deployment, map[string]metav1.ManagedFieldsEntry) {
		r := e.do("GET", deploymentPath, "", nil)
		var d appsv1.Deployment
		if err := json.Unmarshal(r.body, &d); err != nil {
			t.Fatalf("%v: %s", err, r.body)
		}
		return d, managers(t, r.body)
	}
	d, m := get()
	if *d.Spec.Replicas != 3 {
		t.Fatalf("replicas %d after the scale apply", *d.Spec.Replicas)
	}
	if b, ok := m["bob/Apply/scale"]; !ok || !owns(b, `"f:replicas"`) || b.APIVersion != "apps/v1" {
		t.Fatalf("bob's entry after the scale apply: %+v", m)
	}
	if a := m["alice/Apply"]; owns(a, `"f:replicas"`) || !owns(a, `"f:template"`) {
		t.Fatalf("alice's entry after bob forced the replicas: %s", a.FieldsV1.Raw)
	}
	// The same apply again is no conflict; alice re-applying her
	// replicas now conflicts with bob.
	if r := e.do("PATCH", scalePath+"?fieldManager=bob", applyYAML, scale("3")); r.code != 200 {
		t.Fatalf("repeated scale apply: %d %s", r.code, r.body)
	}
	st = e.do("PATCH", deploymentPath+"?fieldManager=alice", applyYAML, deploymentYAML(1, "nginx")).status(t, 409, metav1.StatusReasonConflict)
	if !strings.Contains(st.Message, "bob") {
		t.Fatalf("alice's conflict does not name bob: %s", st.Message)
	}

	// An autoscaler's PUT of the Scale (operation Update) takes the
	// replicas from bob.
	r = e.do("PUT", scalePath+"?fieldManager=hpa", "application/json", scale("4"))
	if r.code != 200 {
		t.Fatalf("scale update: %d %s", r.code, r.body)
	}
	d, m = get()
	if *d.Spec.Replicas != 4 {
		t.Fatalf("replicas %d after the scale update", *d.Spec.Replicas)
	}
	if h, ok := m["hpa/Update/scale"]; !ok || !owns(h, `"f:replicas"`) {
		t.Fatalf("hpa's entry after the scale update: %+v", m)
	}
	if _, ok := m["bob/Apply/scale"]; ok {
		t.Fatalf("bob still has an entry after hpa took his only field: %+v", m)
	}
	// A merge patch of the Scale records its manager too.
	r = e.do("PATCH", scalePath+"?fieldManager=ops", "application/merge-patch+json", []byte(`{"spec":{"replicas":2}}`))
	if r.code != 200 {
		t.Fatalf("scale merge patch: %d %s", r.code, r.body)
	}
	if _, m = get(); !owns(m["ops/Update/scale"], `"f:replicas"`) {
		t.Fatalf("ops' entry after the scale patch: %+v", m)
	}
}
