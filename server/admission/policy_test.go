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
