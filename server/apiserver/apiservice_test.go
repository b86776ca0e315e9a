package apiserver_test

import (
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// TestAggregatedDiscoveryGVRs: the group version resources the conformance
// tests "AggregatedDiscovery should support raw aggregated discovery
// endpoint Accept headers" and "should support aggregated discovery
// interface" (apimachinery/aggregated_discovery.go) look for, through
// client-go's aggregated discovery as the suite asks: apiregistration.k8s.io
// apiservices and storage.k8s.io csinodes among them. (autoscaling's
// horizontalpodautoscalers, also on the list, come with the HPA API.)
func TestAggregatedDiscoveryGVRs(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	dc, err := discovery.NewDiscoveryClientForConfig(e.srv.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	groups, byGV, _, err := dc.GroupsAndMaybeResources()
	if err != nil {
		t.Fatal(err)
	}
	if byGV == nil {
		t.Fatal("the client did not get aggregated discovery")
	}
	want := []schema.GroupVersionResource{
		{Version: "v1", Resource: "namespaces"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"},
		{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"},
		{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"},
		{Group: "apps", Version: "v1", Resource: "deployments"},
		{Group: "authentication.k8s.io", Version: "v1", Resource: "tokenreviews"},
		{Group: "authorization.k8s.io", Version: "v1", Resource: "selfsubjectaccessreviews"},
		{Group: "batch", Version: "v1", Resource: "jobs"},
		{Group: "certificates.k8s.io", Version: "v1", Resource: "certificatesigningrequests"},
		{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"},
		{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"},
		{Group: "events.k8s.io", Version: "v1", Resource: "events"},
		{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"},
		{Group: "node.k8s.io", Version: "v1", Resource: "runtimeclasses"},
		{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
		{Group: "scheduling.k8s.io", Version: "v1", Resource: "priorityclasses"},
		{Group: "storage.k8s.io", Version: "v1", Resource: "csinodes"},
	}
	for _, gvr := range want {
		found := false
		if rl := byGV[gvr.GroupVersion()]; rl != nil {
			for _, r := range rl.APIResources {
				found = found || r.Name == gvr.Resource
			}
		}
		if !found {
			t.Errorf("aggregated discovery: no %v", gvr)
		}
		inGroups := false
		for _, g := range groups.Groups {
			for _, v := range g.Versions {
				inGroups = inGroups || g.Name == gvr.Group && v.Version == gvr.Version
			}
		}
		if !inGroups {
			t.Errorf("server groups: no %v", gvr.GroupVersion())
		}
	}
	wantDiscovered(t, e, apiregistrationv1.SchemeGroupVersion, "apiservices", "apiservices/status")
}

// TestAPIServiceAPI: APIServices are served as kube-aggregator serves them
// (over protobuf with its clientset): a local one is Available at once, one
// naming a Service gets the default port and no availability, names and
// priorities are validated, /status updates keep the spec.
func TestAPIServiceAPI(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cfg := e.srv.RESTConfig()
	cfg.ContentType = protoMedia
	cs, err := aggregator.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := cs.ApiregistrationV1().APIServices()
	local, err := client.Create(e.ctx, &apiregistrationv1.APIService{ObjectMeta: metav1.ObjectMeta{Name: "v1.example.com"},
		Spec: apiregistrationv1.APIServiceSpec{Group: "example.com", Version: "v1", GroupPriorityMinimum: 1000, VersionPriority: 15}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create local: %v", err)
	}
	if len(local.Status.Conditions) != 1 || local.Status.Conditions[0].Type != apiregistrationv1.Available ||
		local.Status.Conditions[0].Status != apiregistrationv1.ConditionTrue || local.Status.Conditions[0].Reason != "Local" {
		t.Fatalf("local status: %+v", local.Status)
	}
	remote, err := client.Create(e.ctx, &apiregistrationv1.APIService{ObjectMeta: metav1.ObjectMeta{Name: "v1alpha1.wardle.example.com"},
		Spec: apiregistrationv1.APIServiceSpec{Group: "wardle.example.com", Version: "v1alpha1", GroupPriorityMinimum: 2000, VersionPriority: 200,
			Service: &apiregistrationv1.ServiceReference{Namespace: "default", Name: "sample-api"}, InsecureSkipTLSVerify: true}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create remote: %v", err)
	}
	if remote.Spec.Service.Port == nil || *remote.Spec.Service.Port != 443 || len(remote.Status.Conditions) != 0 {
		t.Fatalf("remote: %+v", remote)
	}
	_, err = client.Create(e.ctx, &apiregistrationv1.APIService{ObjectMeta: metav1.ObjectMeta{Name: "v2.other.com"},
		Spec: apiregistrationv1.APIServiceSpec{Group: "example.com", Version: "v1", CABundle: []byte("x")}}, metav1.CreateOptions{})
	if f := causeFields(t, err); !f["metadata.name"] || !f["spec.groupPriorityMinimum"] || !f["spec.versionPriority"] || !f["spec.caBundle"] {
		t.Fatalf("causes: %v", f)
	}
	sp, err := client.Patch(e.ctx, remote.Name, types.MergePatchType,
		[]byte(`{"spec":{"versionPriority":1},"status":{"conditions":[{"type":"Available","status":"False","reason":"FailedDiscoveryCheck","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`), metav1.PatchOptions{}, "status")
	if err != nil || sp.Spec.VersionPriority != 200 || len(sp.Status.Conditions) != 1 {
		t.Fatalf("patch /status: %v %+v", err, sp)
	}
	sp.Status.Conditions[0].Status = "Maybe"
	if _, err := client.UpdateStatus(e.ctx, sp, metav1.UpdateOptions{}); !causeFields(t, err)["status.conditions[0].status"] {
		t.Fatalf("bad status: %v", err)
	}
	rows := wantColumns(t, e, "/apis/apiregistration.k8s.io/v1/apiservices", "Name", "Service", "Available", "Age")
	if len(rows) != 2 || rows[0][1] != "Local" || rows[0][2] != "True" || rows[1][1] != "default/sample-api" || rows[1][2] != "False (FailedDiscoveryCheck)" {
		t.Fatalf("rows: %v", rows)
	}
	if err := client.DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(e.ctx, local.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after deletecollection: %v", err)
	}
}
