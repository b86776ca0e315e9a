package admission_test

import (
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skiff-io/skiff/server/controller/controllertest"
)

// simplePolicy denies the requests its rule matches unless expr holds,
// bound with Deny to every namespace.
func simplePolicy(t *testing.T, e *controllertest.Env, name string, rule admissionregistrationv1.RuleWithOperations, mp *admissionregistrationv1.MatchPolicyType, expr, msg string) {
	t.Helper()
	ar := e.Client.AdmissionregistrationV1()
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{MatchPolicy: mp,
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: rule}}},
			Validations: []admissionregistrationv1.Validation{{Expression: expr, Message: msg}},
		}}
	if _, err := ar.ValidatingAdmissionPolicies().Create(e.Ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}}}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(e.Ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func hpaV1(name string, max int32) *autoscalingv1.HorizontalPodAutoscaler {
	return &autoscalingv1.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: autoscalingv1.HorizontalPodAutoscalerSpec{MaxReplicas: max, MinReplicas: ptr.To[int32](1),
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "d"}}}
}

// A policy matching autoscaling/v2 HorizontalPodAutoscalers also matches
// one created through autoscaling/v1 (matchPolicy Equivalent, the
// default), with the object converted to v2 for its expressions; with
// matchPolicy Exact it does not, as in kube-apiserver.
func TestValidatingAdmissionPolicyEquivalentResources(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	rule := func() admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{"autoscaling"}, APIVersions: []string{"v2"}, Resources: []string{"horizontalpodautoscalers"}},
		}
	}
	simplePolicy(t, e, "max-hpa", rule(), nil, "object.spec.maxReplicas <= 5", "at most 5")
	hpas := e.Client.AutoscalingV1().HorizontalPodAutoscalers("default")
	_, err := hpas.Create(e.Ctx, hpaV1("big", 10), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy 'max-hpa' with binding 'max-hpa' denied request: at most 5") {
		t.Fatalf("autoscaling/v1 HPA with maxReplicas 10 under a v2 policy: %v", err)
	}
	if _, err := hpas.Create(e.Ctx, hpaV1("small", 3), metav1.CreateOptions{}); err != nil {
		t.Fatalf("maxReplicas 3: %v", err)
	}

	exact := admissionregistrationv1.Exact
	simplePolicy(t, e, "exact-hpa", rule(), &exact, "object.spec.maxReplicas <= 7", "at most 7")
	if err := e.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(e.Ctx, "max-hpa", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := hpas.Create(e.Ctx, hpaV1("exact", 9), metav1.CreateOptions{}); err != nil {
		t.Fatalf("matchPolicy Exact matched an autoscaling/v1 request: %v", err)
	}
}

// CONNECT requests (pods/exec) go through the policies, with the
// request's PodExecOptions as the object.
func TestValidatingAdmissionPolicyConnect(t *testing.T) {
	e := controllertest.NewEnv(t, controllertest.Options{Admission: true})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
	if _, err := e.Client.CoreV1().Pods("default").Create(e.Ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	simplePolicy(t, e, "no-rm", admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Connect},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/exec"}},
	}, nil, "!object.command.exists(c, c == 'rm')", "no rm")
	err := e.Client.CoreV1().RESTClient().Post().Namespace("default").Resource("pods").Name("p").SubResource("exec").
		Param("command", "rm").Param("stdout", "true").Do(e.Ctx).Error()
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy 'no-rm' with binding 'no-rm' denied request: no rm") {
		t.Fatalf("exec rm: %v", err)
	}
	err = e.Client.CoreV1().RESTClient().Post().Namespace("default").Resource("pods").Name("p").SubResource("exec").
		Param("command", "ls").Param("stdout", "true").Do(e.Ctx).Error()
	if err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy") {
		t.Fatalf("exec ls denied by the policy: %v", err)
	}
}
