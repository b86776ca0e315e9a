package apiserver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestEphemeralContainers: pods/ephemeralcontainers as kube-apiserver
// serves it (kubectl debug's strategic merge patch), with its validation.
func TestEphemeralContainers(t *testing.T) {
	e := newEnv(t, apiservertest.Options{Admission: true})
	if _, err := e.cs.CoreV1().ServiceAccounts("default").Create(e.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := e.cs.CoreV1().Pods("default")
	no := false
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.PodSpec{AutomountServiceAccountToken: &no,
		Containers: []corev1.Container{{Name: "main", Image: "busybox"}}}}
	if _, err := pods.Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const base = "/api/v1/namespaces/default/pods/web/ephemeralcontainers"
	smp := "application/strategic-merge-patch+json"

	// kubectl debug's patch: add one with a target.
	add := `{"spec":{"ephemeralContainers":[{"name":"debugger","image":"busybox","targetContainerName":"main","stdin":true,"tty":true}]}}`
	r := e.do(http.MethodPatch, base, smp, []byte(add))
	if r.code != http.StatusOK {
		t.Fatalf("add ephemeral container: %d %s", r.code, r.body)
	}
	got, err := pods.Get(e.ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.EphemeralContainers) != 1 || got.Spec.EphemeralContainers[0].TargetContainerName != "main" ||
		got.Spec.EphemeralContainers[0].TerminationMessagePolicy != corev1.TerminationMessageReadFile {
		t.Fatalf("ephemeral containers %+v", got.Spec.EphemeralContainers)
	}
	// The pod's spec changed: a new generation (conformance "Ephemeral
	// Containers should update the ephemeral containers in an existing pod").
	if got.Generation != 2 {
		t.Fatalf("generation after adding an ephemeral container: %d, want 2", got.Generation)
	}
	// GET of the subresource is the pod.
	r = e.do(http.MethodGet, base, "", nil)
	var viaSub corev1.Pod
	if r.code != http.StatusOK || json.Unmarshal(r.body, &viaSub) != nil || len(viaSub.Spec.EphemeralContainers) != 1 {
		t.Fatalf("GET %s: %d %s", base, r.code, r.body)
	}
	// The main resource cannot change them.
	got.Spec.EphemeralContainers = nil
	if upd, err := pods.Update(e.ctx, got, metav1.UpdateOptions{}); err != nil || len(upd.Spec.EphemeralContainers) != 1 {
		t.Fatalf("an update of the pod dropped its ephemeral containers: %v", err)
	}

	causes := func(r rawResponse) string {
		t.Helper()
		st := r.status(t, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid)
		var fields []string
		for _, c := range st.Details.Causes {
			fields = append(fields, c.Field+": "+c.Message)
		}
		return strings.Join(fields, "; ")
	}
	// Removing one: 422 naming spec.ephemeralContainers.
	remove := `[{"op":"remove","path":"/spec/ephemeralContainers/0"}]`
	if c := causes(e.do(http.MethodPatch, base, "application/json-patch+json", []byte(remove))); !strings.Contains(c, "spec.ephemeralContainers: ") || !strings.Contains(c, "may not be removed") {
		t.Fatalf("remove: causes %q", c)
	}
	// Changing one: 422.
	change := `[{"op":"replace","path":"/spec/ephemeralContainers/0/image","value":"other"}]`
	if c := causes(e.do(http.MethodPatch, base, "application/json-patch+json", []byte(change))); !strings.Contains(c, "spec.ephemeralContainers[0]") || !strings.Contains(c, "may not be changed") {
		t.Fatalf("change: causes %q", c)
	}
	// Ports, probes and resources are refused, naming the field. (A
	// strategic merge patch puts the patch's items first.)
	bad := `{"spec":{"ephemeralContainers":[{"name":"p","image":"busybox","ports":[{"containerPort":80}],"readinessProbe":{"tcpSocket":{"port":80}}}]}}`
	c := causes(e.do(http.MethodPatch, base, smp, []byte(bad)))
	for _, f := range []string{"spec.ephemeralContainers[0].ports: Forbidden", "spec.ephemeralContainers[0].readinessProbe: Forbidden"} {
		if !strings.Contains(c, f) {
			t.Errorf("ports/probe: causes %q lack %s", c, f)
		}
	}
	// A duplicate name, and a target that is not a container of the pod.
	dup := `{"spec":{"ephemeralContainers":[{"name":"main","image":"busybox"},{"name":"x","image":"busybox","targetContainerName":"nope"}]}}`
	c = causes(e.do(http.MethodPatch, base, smp, []byte(dup)))
	for _, f := range []string{"spec.ephemeralContainers[0].name: Duplicate", "spec.ephemeralContainers[1].targetContainerName: Not found"} {
		if !strings.Contains(c, f) {
			t.Errorf("duplicate/target: causes %q lack %s", c, f)
		}
	}
	// PUT through the typed client (UpdateEphemeralContainers) adds a
	// second one.
	got, _ = pods.Get(e.ctx, "web", metav1.GetOptions{})
	got.Spec.EphemeralContainers = append(got.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "second", Image: "busybox"}})
	upd, err := pods.UpdateEphemeralContainers(e.ctx, "web", got, metav1.UpdateOptions{})
	if err != nil || len(upd.Spec.EphemeralContainers) != 2 {
		t.Fatalf("UpdateEphemeralContainers: %v", err)
	}
	// A privileged one is refused by PodSecurity (baseline by default).
	priv := true
	upd.Spec.EphemeralContainers = append(upd.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "root", Image: "busybox",
			SecurityContext: &corev1.SecurityContext{Privileged: &priv}}})
	if _, err := pods.UpdateEphemeralContainers(e.ctx, "web", upd, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("privileged ephemeral container: %v, want 403 from PodSecurity", err)
	}
}

// TestDebugProxyDiscovery: the subresources kubectl debug and kubectl
// proxy use are in discovery.
func TestDebugProxyDiscovery(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	list, err := e.cs.Discovery().ServerResourcesForGroupVersion("v1")
	if err != nil {
		t.Fatal(err)
	}
	verbs := map[string][]string{}
	for _, r := range list.APIResources {
		verbs[r.Name] = r.Verbs
	}
	for name, want := range map[string]string{
		"pods/ephemeralcontainers": "get,patch,update",
		"pods/proxy":               "create,delete,get,patch,update",
		"services/proxy":           "create,delete,get,patch,update",
		"nodes/proxy":              "create,delete,get,patch,update",
	} {
		if got := strings.Join(verbs[name], ","); got != want {
			t.Errorf("%s verbs %q, want %q", name, got, want)
		}
	}
}
