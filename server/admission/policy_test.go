package admission_test

import (
	"slices"
	"strings"
	"sync"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-io/skiff/server/controller/controllertest"
)

func deployment(name string, replicas int32, labels map[string]string) *appsv1.Deployment {
	sel := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}},
			},
		},
	}
}

// replicasPolicy limits deployments' replicas to the ConfigMap param's
// data.maxReplicas.
func replicasPolicy() *admissionregistrationv1.ValidatingAdmissionPolicy {
	return &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "max-replicas"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			ParamKind: &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"},
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
				},
			}}},
			Variables: []admissionregistrationv1.Variable{{Name: "max", Expression: "int(params.data.maxReplicas)"}},
			Validations: []admissionregistrationv1.Validation{{
				Expression:        "object.spec.replicas <= variables.max",
				MessageExpression: "'replicas must be at most ' + string(variables.max)",
			}},
			AuditAnnotations: []admissionregistrationv1.AuditAnnotation{{Key: "replicas", ValueExpression: "string(object.spec.replicas)"}},
		},
	}
}

func replicasBinding(name string, actions ...admissionregistrationv1.ValidationAction) *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: "max-replicas",
			ParamRef: &admissionregistrationv1.ParamRef{Name: "limits", Namespace: "default",
				ParameterNotFoundAction: ptr.To(admissionregistrationv1.DenyAction)},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "policy", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"exempt"}}},
			}},
			ValidationActions: actions,
		},
	}
}

func TestValidatingAdmissionPolicy(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	c := e.Client
	ar := c.AdmissionregistrationV1()
	if _, err := ar.ValidatingAdmissionPolicies().Create(e.Ctx, replicasPolicy(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(e.Ctx, replicasBinding("max-replicas-binding", admissionregistrationv1.Deny), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deploys := c.AppsV1().Deployments("default")

	// The param is missing: parameterNotFoundAction Deny.
	_, err := deploys.Create(e.Ctx, deployment("a", 1, nil), metav1.CreateOptions{})
	want := "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("without params: %v", err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "limits"}, Data: map[string]string{"maxReplicas": "5"}}
	if _, err := c.CoreV1().ConfigMaps("default").Create(e.Ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Denied as kube-apiserver denies: 422 Invalid, the policy's message.
	_, err = deploys.Create(e.Ctx, deployment("big", 7, nil), metav1.CreateOptions{})
	var st apierrors.APIStatus
	if !apierrors.IsInvalid(err) {
		t.Fatalf("replicas 7: %v", err)
	}
	st = err.(apierrors.APIStatus)
	wantMsg := "deployments.apps \"big\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: replicas must be at most 5"
	if s := st.Status(); s.Code != 422 || s.Message != wantMsg {
		t.Fatalf("status %d %q, want 422 %q", s.Code, s.Message, wantMsg)
	}
	d, err := deploys.Create(e.Ctx, deployment("small", 3, nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("replicas 3: %v", err)
	}
	// Updates are checked too.
	d.Spec.Replicas = ptr.To[int32](9)
	if _, err := deploys.Update(e.Ctx, d, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("update to 9: %v", err)
	}
	// The param changes the limit at once.
	cm.Data["maxReplicas"] = "10"
	if _, err := c.CoreV1().ConfigMaps("default").Update(e.Ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := deploys.Update(e.Ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update to 9 with limit 10: %v", err)
	}

	// The binding's namespaceSelector leaves out namespaces labelled policy=exempt.
	e.Namespace("free")
	ns, err := c.CoreV1().Namespaces().Get(e.Ctx, "free", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{"policy": "exempt"}
	if _, err := c.CoreV1().Namespaces().Update(e.Ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppsV1().Deployments("free").Create(e.Ctx, deployment("big", 50, nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("exempt namespace: %v", err)
	}

	// A Warn binding: the request passes with a Warning header.
	if err := ar.ValidatingAdmissionPolicyBindings().Delete(e.Ctx, "max-replicas-binding", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(e.Ctx, replicasBinding("warn", admissionregistrationv1.Warn, admissionregistrationv1.Audit), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec := &warningRecorder{}
	cfg := e.API.RESTConfig()
	cfg.WarningHandler = rec
	wc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wc.AppsV1().Deployments("default").Create(e.Ctx, deployment("warned", 20, nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("warn binding: %v", err)
	}
	wantWarn := "Validation failed for ValidatingAdmissionPolicy 'max-replicas' with binding 'warn': replicas must be at most 10"
	if got := rec.all(); !slices.Contains(got, wantWarn) {
		t.Fatalf("warnings %q, want %q", got, wantWarn)
	}
}

type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *warningRecorder) HandleWarningHeader(_ int, _ string, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msg)
}

func (r *warningRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// A policy whose expression does not compile is refused with a 422 naming
// the field, as kube-apiserver's validation does.
func TestValidatingAdmissionPolicyInvalid(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	p := replicasPolicy()
	p.Spec.Validations[0].Expression = "object.spec.replicas <="
	_, err := e.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(e.Ctx, p, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("bad expression: %v", err)
	}
	causes := err.(apierrors.APIStatus).Status().Details.Causes
	if len(causes) != 1 || causes[0].Field != "spec.validations[0].expression" || !strings.Contains(causes[0].Message, "compilation failed") {
		t.Fatalf("causes %+v", causes)
	}
	// A binding with no validationActions, and one with Deny and Warn.
	b := replicasBinding("b")
	_, err = e.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(e.Ctx, b, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.validationActions: Required value") {
		t.Fatalf("no actions: %v", err)
	}
	b = replicasBinding("b", admissionregistrationv1.Deny, admissionregistrationv1.Warn)
	_, err = e.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(e.Ctx, b, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("Deny and Warn: %v", err)
	}
}

// crd is a CustomResourceDefinition of kind in example.com/v1 whose spec
// has an integer "size".
func crd(plural, kind, scope string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": plural + ".example.com"},
		"spec": map[string]any{
			"group": "example.com", "scope": scope,
			"names": map[string]any{"plural": plural, "singular": strings.ToLower(kind), "kind": kind},
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "properties": map[string]any{
					"spec": map[string]any{"type": "object", "properties": map[string]any{"size": map[string]any{"type": "integer"}}}}}}}},
		},
	}}
}

// Custom resources as a policy's target and as its params (a
// cluster-scoped kind picked by a label selector).
func TestValidatingAdmissionPolicyCustomResources(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	dyn := dynamic.NewForConfigOrDie(e.API.RESTConfig())
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	for _, c := range []*unstructured.Unstructured{crd("widgets", "Widget", "Namespaced"), crd("limits", "Limit", "Cluster")} {
		if _, err := crds.Create(e.Ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	limits := dyn.Resource(schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "limits"})
	widgets := dyn.Resource(schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}).Namespace("default")
	obj := func(kind, name string, size int64, labels map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": kind,
			"metadata": map[string]any{"name": name, "labels": labels}, "spec": map[string]any{"size": size}}}
	}
	for _, l := range []*unstructured.Unstructured{obj("Limit", "small", 3, map[string]any{"use": "yes"}), obj("Limit", "big", 100, map[string]any{"use": "no"})} {
		if _, err := limits.Create(e.Ctx, l, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "widget-size"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			ParamKind: &admissionregistrationv1.ParamKind{APIVersion: "example.com/v1", Kind: "Limit"},
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"example.com"}, APIVersions: []string{"*"}, Resources: []string{"widgets"}},
				},
			}}},
			MatchConditions: []admissionregistrationv1.MatchCondition{{Name: "not-delete", Expression: "request.operation != 'DELETE'"}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "object.spec.size <= params.spec.size", Message: "widget too big",
				Reason: ptr.To(metav1.StatusReasonForbidden),
			}},
		},
	}
	ar := e.Client.AdmissionregistrationV1()
	if _, err := ar.ValidatingAdmissionPolicies().Create(e.Ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "widget-size"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: "widget-size",
			ParamRef: &admissionregistrationv1.ParamRef{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"use": "yes"}},
				ParameterNotFoundAction: ptr.To(admissionregistrationv1.AllowAction)},
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(e.Ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The validation's reason is the status's: Forbidden, 403.
	_, err := widgets.Create(e.Ctx, obj("Widget", "w", 5, nil), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy 'widget-size' with binding 'widget-size' denied request: widget too big") {
		t.Fatalf("widget of 5: %v", err)
	}
	if _, err := widgets.Create(e.Ctx, obj("Widget", "w", 2, nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("widget of 2: %v", err)
	}
	// No param matches the selector: parameterNotFoundAction Allow.
	l, err := limits.Get(e.Ctx, "small", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.SetLabels(nil)
	if _, err := limits.Update(e.Ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := widgets.Create(e.Ctx, obj("Widget", "w2", 50, nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("no params, Allow: %v", err)
	}
	// Deletes pass the match condition.
	if err := widgets.Delete(e.Ctx, "w2", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

// A policy on DELETE sees the deleted object as oldObject; objectSelector
// picks the objects.
func TestValidatingAdmissionPolicyDelete(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	ar := e.Client.AdmissionregistrationV1()
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "keep"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"protected": "yes"}},
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Delete},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
					},
				}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "has(oldObject.data) && oldObject.data.allowDelete == 'true'",
				MessageExpression: "'configmap ' + oldObject.metadata.name + ' is protected'"}},
		},
	}
	if _, err := ar.ValidatingAdmissionPolicies().Create(e.Ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "keep"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "keep",
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}},
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(e.Ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cms := e.Client.CoreV1().ConfigMaps("default")
	for _, cm := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "guarded", Labels: map[string]string{"protected": "yes"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "open", Labels: map[string]string{"protected": "yes"}}, Data: map[string]string{"allowDelete": "true"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	} {
		if _, err := cms.Create(e.Ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	err := cms.Delete(e.Ctx, "guarded", metav1.DeleteOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy 'keep' with binding 'keep' denied request: configmap guarded is protected") {
		t.Fatalf("delete guarded: %v", err)
	}
	for _, name := range []string{"open", "plain"} {
		if err := cms.Delete(e.Ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
}
