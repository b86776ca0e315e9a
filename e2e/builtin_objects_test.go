package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
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
// PriorityLevelConfigurations, the Dangling condition and nominal seats
// metric of a new level and the response headers of a request it
// classifies; the local APIServices of the built-in group
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
	flowClassification(ctx, t, m)

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

// flowClassification follows the (non-conformance) upstream test "should
// ensure that requests can be classified by adding FlowSchema and
// PriorityLevelConfiguration": a level and a schema for the user noxu; the
// schema's Dangling condition turns False and /metrics reports the
// level's nominal seats; a request as noxu names both in its
// X-Kubernetes-PF-* headers, one as another user names the bootstrap
// schema that matches it.
func flowClassification(ctx context.Context, t *testing.T, m *testutil.Master) {
	t.Helper()
	cs := m.Clientset()
	shares := int32(1)
	pl, err := cs.FlowcontrolV1().PriorityLevelConfigurations().Create(ctx, &flowcontrolv1.PriorityLevelConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-testing-prioritylevel"},
		Spec: flowcontrolv1.PriorityLevelConfigurationSpec{Type: flowcontrolv1.PriorityLevelEnablementLimited,
			Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{NominalConcurrencyShares: &shares,
				LimitResponse: flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeReject}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := cs.FlowcontrolV1().FlowSchemas().Create(ctx, &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-testing-flowschema"},
		Spec: flowcontrolv1.FlowSchemaSpec{MatchingPrecedence: 1000,
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: pl.Name},
			DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects:         []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindUser, User: &flowcontrolv1.UserSubject{Name: "noxu"}}},
				NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}}}}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, "flow schema not dangling, level in /metrics", func() error {
		got, err := cs.FlowcontrolV1().FlowSchemas().Get(ctx, fs.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		found := false
		for _, c := range got.Status.Conditions {
			found = found || c.Type == flowcontrolv1.FlowSchemaConditionDangling && c.Status == flowcontrolv1.ConditionFalse
		}
		if !found {
			return fmt.Errorf("conditions %+v", got.Status.Conditions)
		}
		body, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			return err
		}
		if !strings.Contains(string(body), `apiserver_flowcontrol_nominal_limit_seats{priority_level="e2e-testing-prioritylevel"}`) {
			return fmt.Errorf("no nominal seats of the level in /metrics")
		}
		return nil
	})
	request := func(user string) http.Header {
		cfg := m.RESTConfig()
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
		rt, err := rest.TransportFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL()+"/version", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header
	}
	h := request("noxu")
	if h.Get("X-Kubernetes-PF-FlowSchema-UID") != string(fs.UID) || h.Get("X-Kubernetes-PF-PriorityLevel-UID") != string(pl.UID) {
		t.Errorf("noxu: headers %v, want schema %s level %s", h, fs.UID, pl.UID)
	}
	h = request("foo")
	if h.Get("X-Kubernetes-PF-FlowSchema-UID") == "" || h.Get("X-Kubernetes-PF-PriorityLevel-UID") == "" {
		t.Errorf("foo: headers %v", h)
	}
}
