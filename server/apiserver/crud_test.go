package apiserver_test

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
}

func TestConfigMapCRUDWithClientGo(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cms := e.cs.CoreV1().ConfigMaps("default")

	created, err := cms.Create(e.ctx, configMap("one", map[string]string{"a": "1"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.UID == "" || created.CreationTimestamp.IsZero() || created.ResourceVersion == "" || created.Namespace != "default" {
		t.Fatalf("create did not fill metadata: %+v", created.ObjectMeta)
	}
	if created.Generation != 0 {
		t.Fatalf("configmaps have no generation, got %d", created.Generation)
	}

	got, err := cms.Get(e.ctx, "one", metav1.GetOptions{})
	if err != nil || got.Data["a"] != "1" || got.ResourceVersion != created.ResourceVersion {
		t.Fatalf("get: %v %+v", err, got)
	}

	got.Data["b"] = "2"
	updated, err := cms.Update(e.ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if updated.ResourceVersion == got.ResourceVersion || updated.Data["b"] != "2" || updated.UID != created.UID {
		t.Fatalf("update: %+v", updated)
	}

	// A stale resourceVersion conflicts.
	got.Data["c"] = "3"
	_, err = cms.Update(e.ctx, got, metav1.UpdateOptions{})
	if !apierrors.IsConflict(err) {
		t.Fatalf("stale update: want Conflict, got %v", err)
	}

	// An update without resourceVersion is unconditional.
	got.ResourceVersion = ""
	if _, err := cms.Update(e.ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("unconditional update: %v", err)
	}

	_, err = cms.Create(e.ctx, configMap("one", nil), metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: want AlreadyExists, got %v", err)
	}

	list, err := cms.List(e.ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 || list.ResourceVersion == "" {
		t.Fatalf("list: %v %+v", err, list)
	}

	if err := cms.Delete(e.ctx, "one", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := cms.Get(e.ctx, "one", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: want NotFound, got %v", err)
	}
	if err := cms.Delete(e.ctx, "one", metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("second delete: want NotFound, got %v", err)
	}
}

func TestNotFoundStatusDetails(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	r := e.do("GET", "/apis/apps/v1/namespaces/default/deployments/nope", "", nil)
	st := r.status(t, 404, metav1.StatusReasonNotFound)
	if st.Details == nil || st.Details.Name != "nope" || st.Details.Group != "apps" || st.Details.Kind != "deployments" {
		t.Fatalf("details: %+v", st.Details)
	}
	if st.Message != `deployments.apps "nope" not found` {
		t.Fatalf("message: %q", st.Message)
	}
	e.do("GET", "/api/v1/namespaces/default/widgets", "", nil).status(t, 404, metav1.StatusReasonNotFound)
}

func TestInvalidNameIs422WithCauses(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	_, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, configMap("Bad_Name", nil), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want Invalid, got %v", err)
	}
	st := err.(apierrors.APIStatus).Status()
	if st.Code != 422 || st.Details == nil || len(st.Details.Causes) == 0 || st.Details.Causes[0].Field != "metadata.name" ||
		st.Details.Causes[0].Type != metav1.CauseTypeFieldValueInvalid {
		t.Fatalf("status: %+v", st)
	}
	if !strings.Contains(st.Message, `ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"`) {
		t.Fatalf("message: %q", st.Message)
	}

	// Pods: containers required, container names and images, port ranges.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "", Image: ""},
		{Name: "ok", Image: "busybox", Ports: []corev1.ContainerPort{{ContainerPort: 70000}}},
	}}}
	_, err = e.cs.CoreV1().Pods("default").Create(e.ctx, pod, metav1.CreateOptions{})
	fields := causeFields(t, err)
	for _, f := range []string{"spec.containers[0].name", "spec.containers[0].image", "spec.containers[1].ports[0].containerPort"} {
		if !fields[f] {
			t.Errorf("missing cause %s in %v", f, fields)
		}
	}

	// Deployments: the selector must match the template's labels.
	d := deployment("web", map[string]string{"app": "web"}, map[string]string{"app": "other"})
	_, err = e.cs.AppsV1().Deployments("default").Create(e.ctx, d, metav1.CreateOptions{})
	if fields := causeFields(t, err); !fields["spec.template.metadata.labels"] {
		t.Fatalf("deployment causes: %v", fields)
	}
}

func causeFields(t *testing.T, err error) map[string]bool {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want Invalid, got %v", err)
	}
	out := map[string]bool{}
	for _, c := range err.(apierrors.APIStatus).Status().Details.Causes {
		out[c.Field] = true
	}
	return out
}

func deployment(name string, selector, labels map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1.27"}}},
			},
		},
	}
}

func TestBodyErrors(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	path := "/api/v1/namespaces/default/configmaps"

	big := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"x":"` + strings.Repeat("a", 4<<20) + `"}}`
	e.do("POST", path, "application/json", []byte(big)).status(t, 413, metav1.StatusReasonRequestEntityTooLarge)

	st := e.do("POST", path, "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap",`)).status(t, 400, metav1.StatusReasonBadRequest)
	if st.Message == "" {
		t.Fatal("malformed JSON: empty message")
	}
	e.do("POST", path, "application/yaml", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: [\n")).status(t, 400, metav1.StatusReasonBadRequest)

	// YAML bodies work.
	r := e.do("POST", path, "application/yaml", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n"))
	if r.code != 201 {
		t.Fatalf("yaml create: %d %s", r.code, r.body)
	}

	// Kind or version that does not fit the URL.
	e.do("POST", path, "application/json", []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}`)).status(t, 400, metav1.StatusReasonBadRequest)
	e.do("POST", path, "application/json", []byte(`{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"s"}}`)).status(t, 400, metav1.StatusReasonBadRequest)

	// Name in the body differs from the URL.
	e.do("PUT", path+"/from-yaml", "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"}}`)).status(t, 400, metav1.StatusReasonBadRequest)
	// Namespace in the body differs from the URL.
	e.do("POST", path, "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"kube-system"}}`)).status(t, 400, metav1.StatusReasonBadRequest)
}

func TestFieldValidation(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	path := "/api/v1/namespaces/default/configmaps"
	body := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fv"},"data":{"a":"b"},"bogus":1}`)

	st := e.do("POST", path+"?fieldValidation=Strict", "application/json", body).status(t, 400, metav1.StatusReasonBadRequest)
	if !strings.Contains(st.Message, `strict decoding error: unknown field "bogus"`) {
		t.Fatalf("strict message: %q", st.Message)
	}
	r := e.do("POST", path, "application/json", body)
	if r.code != 201 || !strings.Contains(r.header.Get("Warning"), `unknown field \"bogus\"`) {
		t.Fatalf("warn: %d %q %s", r.code, r.header.Values("Warning"), r.body)
	}
	r = e.do("PUT", path+"/fv?fieldValidation=Ignore", "application/json", body)
	if r.code != 200 || len(r.header.Values("Warning")) != 0 {
		t.Fatalf("ignore: %d %q", r.code, r.header.Values("Warning"))
	}
	dup := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","name":"dup"}}`)
	st = e.do("POST", path+"?fieldValidation=Strict", "application/json", dup).status(t, 400, metav1.StatusReasonBadRequest)
	if !strings.Contains(st.Message, "duplicate field") {
		t.Fatalf("duplicate message: %q", st.Message)
	}
}

func TestDryRunDoesNotWrite(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cms := e.cs.CoreV1().ConfigMaps("default")
	out, err := cms.Create(e.ctx, configMap("dry", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil || out.Name != "dry" {
		t.Fatalf("dry create: %v", err)
	}
	if _, err := cms.Get(e.ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("dry create wrote: %v", err)
	}
	_, err = cms.Create(e.ctx, configMap("Bad", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("dry run must validate: %v", err)
	}
}

func TestNamespaceRules(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	_, err := e.cs.CoreV1().ConfigMaps("missing").Create(e.ctx, configMap("x", nil), metav1.CreateOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("missing namespace: want NotFound, got %v", err)
	}
	if st := err.(apierrors.APIStatus).Status(); st.Details.Kind != "namespaces" || st.Details.Name != "missing" {
		t.Fatalf("missing namespace details: %+v", st.Details)
	}

	ns := e.createNamespace("doomed")
	if ns.Status.Phase != corev1.NamespaceActive || ns.Labels[corev1.LabelMetadataName] != "doomed" {
		t.Fatalf("namespace defaults: %+v", ns)
	}
	// A finalizer keeps the namespace Terminating.
	ns.Finalizers = []string{"example.com/hold"}
	ns, err = e.cs.CoreV1().Namespaces().Update(e.ctx, ns, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cs.CoreV1().Namespaces().Delete(e.ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, err = e.cs.CoreV1().Namespaces().Get(e.ctx, "doomed", metav1.GetOptions{})
	if err != nil || ns.DeletionTimestamp == nil || ns.Status.Phase != corev1.NamespaceTerminating {
		t.Fatalf("terminating namespace: %v %+v", err, ns)
	}
	_, err = e.cs.CoreV1().ConfigMaps("doomed").Create(e.ctx, configMap("x", nil), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "unable to create new content in namespace doomed because it is being terminated") {
		t.Fatalf("terminating namespace: want Forbidden, got %v", err)
	}

	// A new namespace gets the "kubernetes" finalizer: deleting it leaves
	// it Terminating with its contents (for the namespace controller)
	// until namespaces/finalize removes the finalizer.
	gone := e.createNamespace("gone")
	if len(gone.Spec.Finalizers) != 1 || gone.Spec.Finalizers[0] != corev1.FinalizerKubernetes {
		t.Fatalf("spec.finalizers on create: %v", gone.Spec.Finalizers)
	}
	if _, err := e.cs.CoreV1().ConfigMaps("gone").Create(e.ctx, configMap("x", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.cs.CoreV1().Namespaces().Delete(e.ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().ConfigMaps("gone").Get(e.ctx, "x", metav1.GetOptions{}); err != nil {
		t.Fatalf("content of a terminating namespace: %v", err)
	}
	// A plain update may not drop spec.finalizers.
	gone, err = e.cs.CoreV1().Namespaces().Get(e.ctx, "gone", metav1.GetOptions{})
	if err != nil || gone.Status.Phase != corev1.NamespaceTerminating {
		t.Fatalf("terminating: %v %+v", err, gone)
	}
	gone.Spec.Finalizers = nil
	if gone, err = e.cs.CoreV1().Namespaces().Update(e.ctx, gone, metav1.UpdateOptions{}); err != nil || len(gone.Spec.Finalizers) != 1 {
		t.Fatalf("update dropping spec.finalizers: %v %v", err, gone.Spec.Finalizers)
	}
	gone.Spec.Finalizers = nil
	if _, err := e.cs.CoreV1().Namespaces().Finalize(e.ctx, gone, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().Namespaces().Get(e.ctx, "gone", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("finalized namespace: %v", err)
	}
}

func TestGenerateName(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "gen-"}}
		out, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, cm, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.Name, "gen-") || len(out.Name) != len("gen-")+5 || seen[out.Name] {
			t.Fatalf("generated name %q", out.Name)
		}
		seen[out.Name] = true
	}
}

func TestFinalizers(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cms := e.cs.CoreV1().ConfigMaps("default")
	cm := configMap("fin", nil)
	cm.Finalizers = []string{"example.com/wait"}
	cm, err := cms.Create(e.ctx, cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Wrong UID precondition.
	uid := types.UID("not-the-uid")
	err = cms.Delete(e.ctx, "fin", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if !apierrors.IsConflict(err) {
		t.Fatalf("uid precondition: want Conflict, got %v", err)
	}
	// Delete answers 200 with the object, which stays with deletionTimestamp.
	r := e.do("DELETE", "/api/v1/namespaces/default/configmaps/fin", "application/json", []byte(`{"kind":"DeleteOptions","apiVersion":"v1"}`))
	if r.code != 200 || !bytes.Contains(r.body, []byte(`"deletionTimestamp"`)) {
		t.Fatalf("delete with finalizer: %d %s", r.code, r.body)
	}
	got, err := cms.Get(e.ctx, "fin", metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp == nil {
		t.Fatalf("object with finalizer: %v %+v", err, got)
	}
	// Removing the last finalizer deletes it.
	got.Finalizers = nil
	if _, err := cms.Update(e.ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("remove finalizer: %v", err)
	}
	if _, err := cms.Get(e.ctx, "fin", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after finalizer removal: %v", err)
	}

	// propagationPolicy=Foreground adds the GC's finalizer.
	if _, err := cms.Create(e.ctx, configMap("fg", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fg := metav1.DeletePropagationForeground
	if err := cms.Delete(e.ctx, "fg", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Fatal(err)
	}
	got, err = cms.Get(e.ctx, "fg", metav1.GetOptions{})
	if err != nil || len(got.Finalizers) != 1 || got.Finalizers[0] != metav1.FinalizerDeleteDependents {
		t.Fatalf("foreground: %v %+v", err, got)
	}
}

func TestStatusSubresourceAndGeneration(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	deps := e.cs.AppsV1().Deployments("default")
	d, err := deps.Create(e.ctx, deployment("web", map[string]string{"app": "web"}, map[string]string{"app": "web"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Generation != 1 || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Fatalf("deployment defaults: gen %d %+v", d.Generation, d.Spec)
	}
	// A status update changes only status.
	d.Status.ReadyReplicas = 1
	d.Labels = map[string]string{"ignored": "yes"}
	d2, err := deps.UpdateStatus(e.ctx, d, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d2.Status.ReadyReplicas != 1 || d2.Labels["ignored"] != "" || d2.Generation != 1 {
		t.Fatalf("status update: %+v", d2)
	}
	// A main update ignores status and bumps the generation on spec changes.
	three := int32(3)
	d2.Spec.Replicas = &three
	d2.Status.ReadyReplicas = 7
	d3, err := deps.Update(e.ctx, d2, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d3.Generation != 2 || d3.Status.ReadyReplicas != 1 {
		t.Fatalf("spec update: gen %d status %+v", d3.Generation, d3.Status)
	}
	// Selector is immutable.
	d3.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
	d3.Spec.Template.Labels = map[string]string{"app": "x"}
	if _, err := deps.Update(e.ctx, d3, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("selector change: %v", err)
	}

	// Pods: status starts Pending, /status works through protobuf.
	pod, err := e.cs.CoreV1().Pods("default").Create(e.ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodPending || pod.Spec.RestartPolicy != corev1.RestartPolicyAlways ||
		pod.Spec.Containers[0].ImagePullPolicy != corev1.PullAlways || pod.Spec.SchedulerName != "default-scheduler" {
		t.Fatalf("pod defaults: %+v %+v", pod.Spec, pod.Status)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = "10.0.0.5"
	pod, err = e.cs.CoreV1().Pods("default").UpdateStatus(e.ctx, pod, metav1.UpdateOptions{})
	if err != nil || pod.Status.Phase != corev1.PodRunning {
		t.Fatalf("pod status: %v %+v", err, pod.Status)
	}
	r := e.do("GET", "/api/v1/namespaces/default/pods/p/status", "", nil)
	if r.code != 200 || !bytes.Contains(r.body, []byte(`"podIP":"10.0.0.5"`)) {
		t.Fatalf("get status: %d %s", r.code, r.body)
	}
	e.do("PUT", "/api/v1/namespaces/default/configmaps/x/status", "application/json", []byte(`{}`)).status(t, 404, metav1.StatusReasonNotFound)
}

func TestPatch(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cms := e.cs.CoreV1().ConfigMaps("default")
	cm, err := cms.Create(e.ctx, configMap("p", map[string]string{"a": "1"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cms.Patch(e.ctx, "p", types.MergePatchType, []byte(`{"data":{"b":"2"}}`), metav1.PatchOptions{})
	if err != nil || out.Data["a"] != "1" || out.Data["b"] != "2" {
		t.Fatalf("merge patch: %v %+v", err, out)
	}
	out, err = cms.Patch(e.ctx, "p", types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	if err != nil || out.Labels["x"] != "y" {
		t.Fatalf("strategic patch: %v %+v", err, out)
	}
	out, err = cms.Patch(e.ctx, "p", types.JSONPatchType, []byte(`[{"op":"remove","path":"/data/a"}]`), metav1.PatchOptions{})
	if err != nil || out.Data["a"] != "" {
		t.Fatalf("json patch: %v %+v", err, out)
	}
	stale := `{"metadata":{"resourceVersion":"` + cm.ResourceVersion + `"},"data":{"c":"3"}}`
	if _, err := cms.Patch(e.ctx, "p", types.MergePatchType, []byte(stale), metav1.PatchOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("patch with stale rv: %v", err)
	}
	rv, _ := strconv.Atoi(out.ResourceVersion)
	if rv == 0 {
		t.Fatal("no resourceVersion")
	}
}
