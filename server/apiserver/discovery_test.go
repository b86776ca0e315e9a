package apiserver_test

import (
	"bytes"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
	"github.com/skiff-io/skiff/server/registry"
)

func TestDiscovery(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	v, err := e.cs.Discovery().ServerVersion()
	if err != nil || v.GitVersion != "v1.33.0-skiff" || v.Major != "1" {
		t.Fatalf("version: %v %+v", err, v)
	}
	groups, resources, err := e.cs.Discovery().ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, g := range groups {
		names[g.Name] = true
	}
	for _, g := range []string{"", "apps", "coordination.k8s.io"} {
		if !names[g] {
			t.Fatalf("group %q missing from %v", g, names)
		}
	}
	found := map[string]metav1.APIResource{}
	for _, l := range resources {
		for _, r := range l.APIResources {
			found[l.GroupVersion+"/"+r.Name] = r
		}
	}
	pods := found["v1/pods"]
	if !pods.Namespaced || pods.Kind != "Pod" || len(pods.ShortNames) != 1 || pods.ShortNames[0] != "po" || len(pods.Verbs) != 8 {
		t.Fatalf("pods: %+v", pods)
	}
	if _, ok := found["v1/pods/status"]; !ok {
		t.Fatalf("pods/status missing: %v", found)
	}
	if ns := found["v1/namespaces"]; ns.Namespaced || ns.ShortNames[0] != "ns" {
		t.Fatalf("namespaces: %+v", ns)
	}
	if d := found["apps/v1/deployments"]; d.Kind != "Deployment" || d.ShortNames[0] != "deploy" {
		t.Fatalf("deployments: %+v", d)
	}
	if _, ok := found["coordination.k8s.io/v1/leases"]; !ok {
		t.Fatal("leases missing")
	}

	// Legacy documents when aggregated discovery is not asked for.
	r := e.do("GET", "/apis/apps", "", nil)
	var g metav1.APIGroup
	if err := json.Unmarshal(r.body, &g); err != nil || g.Name != "apps" || g.PreferredVersion.GroupVersion != "apps/v1" {
		t.Fatalf("/apis/apps: %s", r.body)
	}
	r = e.do("GET", "/apis", "", nil, "Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
	if r.header.Get("Content-Type") != "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList" ||
		!bytes.Contains(r.body, []byte(`"kind":"APIGroupDiscoveryList"`)) {
		t.Fatalf("aggregated: %v %s", r.header, r.body)
	}
	e.do("GET", "/apis/nope/v1", "", nil).status(t, 404, metav1.StatusReasonNotFound)
}

// TestProtobufBody posts a protobuf-encoded object, as typed clientsets do.
func TestProtobufBody(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "pb"},
		Data:       map[string]string{"k": "v"},
	}
	var buf bytes.Buffer
	if err := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme).Encode(cm, &buf); err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "/api/v1/namespaces/default/configmaps", "application/vnd.kubernetes.protobuf", buf.Bytes())
	if r.code != 201 || !bytes.Contains(r.body, []byte(`"k":"v"`)) {
		t.Fatalf("protobuf create: %d %s", r.code, r.body)
	}
	e.do("POST", "/api/v1/namespaces/default/configmaps", "application/vnd.kubernetes.protobuf", []byte("k8s\x00garbage")).
		status(t, 400, metav1.StatusReasonBadRequest)
	_ = registry.New()
}
