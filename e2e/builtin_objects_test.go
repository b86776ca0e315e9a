package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	"k8s.io/utils/ptr"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestBuiltinAPIObjects: the objects kube-apiserver creates for itself,
// which the conformance suite reads, exist on a Skiff master: the default
// ServiceCIDR `kubernetes` of --service-cidr with Ready=True, and the
// IPAddress of the `kubernetes` Service's cluster IP, recreated after a
// client deletes it; kube-apiserver's bootstrap FlowSchemas and
// PriorityLevelConfigurations; the local APIServices of the built-in group
// versions, and of a CRD's while it exists.
func TestBuiltinAPIObjects(t *testing.T) {
	m, kc := kubectlMaster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := m.Clientset()

	testutil.WaitFor(t, 30*time.Second, "default ServiceCIDR ready", func() error {
		sc, err := cs.NetworkingV1().ServiceCIDRs().Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if strings.Join(sc.Spec.CIDRs, ",") != "10.43.0.0/16" {
			return fmt.Errorf("cidrs %v", sc.Spec.CIDRs)
		}
		if !apimeta.IsStatusConditionTrue(sc.Status.Conditions, networkingv1.ServiceCIDRConditionReady) {
			return fmt.Errorf("conditions %+v", sc.Status.Conditions)
		}
		return nil
	})
	if out := kc("get", "servicecidrs"); !strings.Contains(out, "kubernetes") || !strings.Contains(out, "10.43.0.0/16") {
		t.Errorf("kubectl get servicecidrs:\n%s", out)
	}
	ip, err := cs.NetworkingV1().IPAddresses().Get(ctx, "10.43.0.1", metav1.GetOptions{})
	if err != nil || ip.Spec.ParentRef == nil || ip.Spec.ParentRef.Name != "kubernetes" {
		t.Fatalf("IPAddress of the kubernetes Service: %v %+v", err, ip)
	}
	if out := kc("get", "ipaddresses"); !strings.Contains(out, "services/default/kubernetes") {
		t.Errorf("kubectl get ipaddresses:\n%s", out)
	}
	if err := cs.NetworkingV1().IPAddresses().Delete(ctx, "10.43.0.1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 45*time.Second, "deleted IPAddress of a live Service recreated", func() error {
		_, err := cs.NetworkingV1().IPAddresses().Get(ctx, "10.43.0.1", metav1.GetOptions{})
		return err
	})

	for _, name := range []string{"exempt", "catch-all", "global-default", "system", "workload-low"} {
		if _, err := cs.FlowcontrolV1().PriorityLevelConfigurations().Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("priority level %s: %v", name, err)
		}
	}
	for _, name := range []string{"exempt", "catch-all", "global-default", "probes", "service-accounts"} {
		fs, err := cs.FlowcontrolV1().FlowSchemas().Get(ctx, name, metav1.GetOptions{})
		if err != nil || fs.Annotations["apf.kubernetes.io/autoupdate-spec"] != "true" {
			t.Errorf("flow schema %s: %v", name, err)
		}
	}
	if out := kc("get", "flowschemas"); !strings.Contains(out, "catch-all") || !strings.Contains(out, "MATCHINGPRECEDENCE") {
		t.Errorf("kubectl get flowschemas:\n%s", out)
	}
	if out := kc("get", "prioritylevelconfigurations"); !strings.Contains(out, "workload-low") || !strings.Contains(out, "Limited") {
		t.Errorf("kubectl get prioritylevelconfigurations:\n%s", out)
	}

	agg, err := aggregator.NewForConfig(m.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	apiServices := agg.ApiregistrationV1().APIServices()
	testutil.WaitFor(t, 30*time.Second, "built-in APIServices", func() error {
		for _, name := range []string{"v1.", "v1.apps", "v1.flowcontrol.apiserver.k8s.io", "v1.apiregistration.k8s.io", "v1beta1.metrics.k8s.io"} {
			as, err := apiServices.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if as.Spec.Service != nil || len(as.Status.Conditions) != 1 || as.Status.Conditions[0].Status != apiregistrationv1.ConditionTrue {
				return fmt.Errorf("%s: %+v", name, as)
			}
		}
		return nil
	})
	if out := kc("get", "apiservices"); !strings.Contains(out, "v1.apps") || !strings.Contains(out, "Local") {
		t.Errorf("kubectl get apiservices:\n%s", out)
	}
	crds := apiextensionsclient.NewForConfigOrDie(m.RESTConfig()).ApiextensionsV1().CustomResourceDefinitions()
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.example.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{Group: "example.com", Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object",
					XPreserveUnknownFields: ptr.To(true)}}}}},
	}
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "the CRD's APIService", func() error {
		as, err := apiServices.Get(ctx, "v1.example.com", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if as.Labels["kube-aggregator.kubernetes.io/automanaged"] != "true" {
			return fmt.Errorf("labels %v", as.Labels)
		}
		return nil
	})
	if err := crds.Delete(ctx, crd.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 45*time.Second, "the deleted CRD's APIService gone", func() error {
		if _, err := apiServices.Get(ctx, "v1.example.com", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
}
