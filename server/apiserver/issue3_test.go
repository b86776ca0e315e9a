package apiserver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

func testPod(name, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
}

func testTemplate(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
}

func TestBindingIsAtomic(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	pods := e.cs.CoreV1().Pods("default")
	if _, err := pods.Create(e.ctx, testPod("p", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bind := func(node string) error {
		return pods.Bind(e.ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "p"},
			Target: corev1.ObjectReference{Kind: "Node", Name: node}}, metav1.CreateOptions{})
	}
	if err := bind("n1"); err != nil {
		t.Fatalf("bind: %v", err)
	}
	got, err := pods.Get(e.ctx, "p", metav1.GetOptions{})
	if err != nil || got.Spec.NodeName != "n1" || len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Type != corev1.PodScheduled {
		t.Fatalf("bound pod: %v %+v", err, got)
	}
	if err := bind("n2"); !apierrors.IsConflict(err) || !strings.Contains(err.Error(), `already assigned to node "n1"`) {
		t.Fatalf("second bind: %v, want 409", err)
	}
	if err := pods.Bind(e.ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("bind without target: %v", err)
	}
}

func TestEvictionHonoursPDB(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	pods := e.cs.CoreV1().Pods("default")
	for _, name := range []string{"running", "pending"} {
		p, err := pods.Create(e.ctx, testPod(name, "n1"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if name == "running" {
			p.Status.Phase = corev1.PodRunning
			if _, err := pods.UpdateStatus(e.ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	one := intstr.FromInt32(1)
	pdbs := e.cs.PolicyV1().PodDisruptionBudgets("default")
	pdb, err := pdbs.Create(e.ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "b"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	evict := func(name string) error {
		return pods.EvictV1(e.ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name}})
	}
	// The budget's status is not computed yet: no disruption allowed.
	if err := evict("running"); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("evict under an unprocessed budget: %v, want 429", err)
	}
	// A pending pod ignores budgets.
	if err := evict("pending"); err != nil {
		t.Fatalf("evict pending: %v", err)
	}
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, DisruptionsAllowed: 1, CurrentHealthy: 2, DesiredHealthy: 1, ExpectedPods: 2}
	if _, err := pdbs.UpdateStatus(e.ctx, pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := evict("running"); err != nil {
		t.Fatalf("evict with a disruption allowed: %v", err)
	}
	got, err := pods.Get(e.ctx, "running", metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp == nil {
		t.Fatalf("evicted pod not terminating: %v %+v", err, got)
	}
	after, err := pdbs.Get(e.ctx, "b", metav1.GetOptions{})
	if err != nil || after.Status.DisruptionsAllowed != 0 || len(after.Status.DisruptedPods) != 1 {
		t.Fatalf("budget after eviction: %v %+v", err, after.Status)
	}
}

func TestStreamingIs503WithoutKubelets(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	if _, err := e.cs.CoreV1().Pods("default").Create(e.ctx, testPod("p", "n1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"log", "exec?command=ls", "attach", "portforward"} {
		st := e.do("GET", "/api/v1/namespaces/default/pods/p/"+p, "", nil).status(t, 503, metav1.StatusReasonServiceUnavailable)
		if !strings.Contains(st.Message, "the kubelet is not available yet") {
			t.Fatalf("%s: %s", p, st.Message)
		}
	}
	e.do("GET", "/api/v1/namespaces/default/pods/missing/log", "", nil).status(t, 404, metav1.StatusReasonNotFound)
}

func TestScaleSubresource(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	labels := map[string]string{"app": "s"}
	sts, err := e.cs.AppsV1().StatefulSets("default").Create(e.ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: testTemplate(labels)}}, metav1.CreateOptions{})
	if err != nil || *sts.Spec.Replicas != 1 || sts.Spec.PodManagementPolicy != appsv1.OrderedReadyPodManagement {
		t.Fatalf("create statefulset: %v %+v", err, sts)
	}
	sc, err := e.cs.AppsV1().StatefulSets("default").GetScale(e.ctx, "db", metav1.GetOptions{})
	if err != nil || sc.Spec.Replicas != 1 || sc.Status.Selector != "app=s" {
		t.Fatalf("get scale: %v %+v", err, sc)
	}
	if _, err := e.cs.AppsV1().StatefulSets("default").Patch(e.ctx, "db", types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}, "scale"); err != nil {
		t.Fatalf("patch scale: %v", err)
	}
	got, _ := e.cs.AppsV1().StatefulSets("default").Get(e.ctx, "db", metav1.GetOptions{})
	if *got.Spec.Replicas != 3 || got.Generation != 2 {
		t.Fatalf("after scale: replicas %d generation %d", *got.Spec.Replicas, got.Generation)
	}
	sc.Spec.Replicas = 5 // sc carries the old resourceVersion: a precondition
	if _, err := e.cs.AppsV1().StatefulSets("default").UpdateScale(e.ctx, "db", sc, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale scale update: %v", err)
	}
	// Immutable fields: only replicas, template, updateStrategy... change.
	got.Spec.ServiceName = "other"
	if _, err := e.cs.AppsV1().StatefulSets("default").Update(e.ctx, got, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) ||
		!strings.Contains(err.Error(), "updates to statefulset spec for fields other than") {
		t.Fatalf("update of serviceName: %v", err)
	}
}

func TestJobSelectorGeneratedAndImmutable(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	tmpl := testTemplate(nil)
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	job, err := e.cs.BatchV1().Jobs("default").Create(e.ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "j"},
		Spec: batchv1.JobSpec{Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uid := string(job.UID)
	if job.Spec.Selector == nil || job.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel] != uid ||
		job.Spec.Template.Labels[batchv1.JobNameLabel] != "j" || *job.Spec.Completions != 1 || *job.Spec.BackoffLimit != 6 {
		t.Fatalf("job defaults: %+v", job.Spec)
	}
	job.Spec.Selector.MatchLabels = map[string]string{"x": "y"}
	if _, err := e.cs.BatchV1().Jobs("default").Update(e.ctx, job, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) ||
		!strings.Contains(err.Error(), "spec.selector") {
		t.Fatalf("selector update: %v", err)
	}
	// Pods of a job must not restart Always.
	_, err = e.cs.BatchV1().Jobs("default").Create(e.ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "k"},
		Spec: batchv1.JobSpec{Template: testTemplate(nil)}}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.template.spec.restartPolicy") {
		t.Fatalf("job with restartPolicy Always: %v", err)
	}
	_, err = e.cs.BatchV1().CronJobs("default").Create(e.ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "c"},
		Spec: batchv1.CronJobSpec{Schedule: "61 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.schedule") {
		t.Fatalf("cronjob with a bad schedule: %v", err)
	}
}

func TestRBACStoredAndValidated(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "rb"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "reader"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "alice"}}}
	got, err := e.cs.RbacV1().RoleBindings("default").Create(e.ctx, rb, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.RoleRef.Name = "writer"
	if _, err := e.cs.RbacV1().RoleBindings("default").Update(e.ctx, got, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) ||
		!strings.Contains(err.Error(), "cannot change roleRef") {
		t.Fatalf("roleRef change: %v", err)
	}
	_, err = e.cs.RbacV1().ClusterRoles().Create(e.ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "system:x"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}}}}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "rules[0].verbs") {
		t.Fatalf("rule without verbs: %v", err)
	}
}

func TestPatchLimitsAndApply(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, configMap("p", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ops := make([]string, 10001)
	for i := range ops {
		ops[i] = `{"op":"test","path":"/metadata/name","value":"p"}`
	}
	big := []byte("[" + strings.Join(ops, ",") + "]")
	e.do("PATCH", "/api/v1/namespaces/default/configmaps/p", "application/json-patch+json", big).status(t, 413, metav1.StatusReasonRequestEntityTooLarge)
	// Server-side apply is served (apply_test.go); without a fieldManager
	// it is kube-apiserver's 422.
	e.do("PATCH", "/api/v1/namespaces/default/configmaps/p", "application/apply-patch+yaml", []byte("data: {a: b}")).
		status(t, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid)
}

func TestDeleteAccepted(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cm := configMap("f", nil)
	cm.Finalizers = []string{"example.com/hold"}
	if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := e.do("DELETE", "/api/v1/namespaces/default/configmaps/f", "application/json", []byte(`{"orphanDependents":false}`))
	if r.code != http.StatusAccepted {
		t.Fatalf("delete of an object with finalizers and orphanDependents=false: %d %s", r.code, r.body)
	}
}

func TestOpenAPIDocuments(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	r := e.do("GET", "/openapi/v2", "", nil, "Accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
	if r.code != 200 {
		t.Fatalf("/openapi/v2: %d", r.code)
	}
	doc := &openapi_v2.Document{}
	if err := proto.Unmarshal(r.body, doc); err != nil {
		t.Fatalf("/openapi/v2 protobuf: %v", err)
	}
	defs := map[string]bool{}
	for _, d := range doc.GetDefinitions().GetAdditionalProperties() {
		defs[d.GetName()] = true
	}
	for _, want := range []string{"io.k8s.api.core.v1.Pod", "io.k8s.api.apps.v1.Deployment", "io.k8s.api.batch.v1.CronJob",
		"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "io.k8s.api.autoscaling.v1.Scale"} {
		if !defs[want] {
			t.Fatalf("definition %s missing", want)
		}
	}
	// Every PATCH declares fieldValidation, so kubectl validates on the server.
	patches := 0
	for _, p := range doc.GetPaths().GetPath() {
		op := p.GetValue().GetPatch()
		if op == nil {
			continue
		}
		patches++
		found := false
		for _, param := range op.GetParameters() {
			if param.GetParameter().GetNonBodyParameter().GetQueryParameterSubSchema().GetName() == "fieldValidation" {
				found = true
			}
		}
		if !found {
			t.Fatalf("PATCH %s lacks fieldValidation", p.GetName())
		}
	}
	if patches < 26 {
		t.Fatalf("%d PATCH operations", patches)
	}

	var index struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(e.do("GET", "/openapi/v3", "", nil).body, &index); err != nil {
		t.Fatal(err)
	}
	apps, ok := index.Paths["apis/apps/v1"]
	if !ok || len(index.Paths) != 24 { // 17 + metrics.k8s.io/v1beta1 + flowcontrol and apiregistration + autoscaling/v1 and v2 + custom and external metrics
		t.Fatalf("v3 index: %+v", index)
	}
	r = e.do("GET", apps.ServerRelativeURL, "", nil)
	var v3 struct {
		OpenAPI    string `json:"openapi"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(r.body, &v3); err != nil || r.code != 200 || !strings.HasPrefix(v3.OpenAPI, "3.") {
		t.Fatalf("v3 apps/v1: %d %v", r.code, err)
	}
	spec := string(v3.Components.Schemas["io.k8s.api.apps.v1.DeploymentSpec"])
	for _, want := range []string{`"replicas"`, `#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec`} {
		if !strings.Contains(spec, want) {
			t.Fatalf("DeploymentSpec lacks %s: %s", want, spec)
		}
	}
	containers := string(v3.Components.Schemas["io.k8s.api.core.v1.PodSpec"])
	if !strings.Contains(containers, `"x-kubernetes-patch-merge-key":"name"`) {
		t.Fatalf("PodSpec.containers lacks its merge key: %.300s", containers)
	}
	// A stale hash is redirected to the current document.
	if r := e.do("GET", strings.Split(apps.ServerRelativeURL, "?")[0]+"?hash=stale", "", nil); r.code != 200 || !strings.Contains(string(r.body), "DeploymentSpec") {
		t.Fatalf("stale hash: %d", r.code)
	}
}
