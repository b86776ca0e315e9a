package apiserver_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

func TestListSelectors(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	e.createNamespace("other")
	for i, ns := range []string{"default", "default", "other"} {
		cm := configMap(fmt.Sprintf("cm%d", i), nil)
		cm.Labels = map[string]string{"tier": []string{"web", "db", "web"}[i]}
		if _, err := e.cs.CoreV1().ConfigMaps(ns).Create(e.ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	names := func(l *corev1.ConfigMapList) []string {
		var out []string
		for _, it := range l.Items {
			out = append(out, it.Namespace+"/"+it.Name)
		}
		return out
	}
	all, err := e.cs.CoreV1().ConfigMaps("").List(e.ctx, metav1.ListOptions{LabelSelector: "tier=web"})
	if err != nil || fmt.Sprint(names(all)) != "[default/cm0 other/cm2]" {
		t.Fatalf("label selector across namespaces: %v %v", err, names(all))
	}
	l, err := e.cs.CoreV1().ConfigMaps("default").List(e.ctx, metav1.ListOptions{LabelSelector: "tier in (db)"})
	if err != nil || fmt.Sprint(names(l)) != "[default/cm1]" {
		t.Fatalf("set selector: %v %v", err, names(l))
	}
	l, err = e.cs.CoreV1().ConfigMaps("").List(e.ctx, metav1.ListOptions{FieldSelector: "metadata.namespace=other"})
	if err != nil || fmt.Sprint(names(l)) != "[other/cm2]" {
		t.Fatalf("field selector: %v %v", err, names(l))
	}
	l, err = e.cs.CoreV1().ConfigMaps("default").List(e.ctx, metav1.ListOptions{FieldSelector: "metadata.name!=cm0"})
	if err != nil || fmt.Sprint(names(l)) != "[default/cm1]" {
		t.Fatalf("field selector !=: %v %v", err, names(l))
	}
	_, err = e.cs.CoreV1().ConfigMaps("default").List(e.ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=x"})
	if !apierrors.IsBadRequest(err) || err.Error() != "field label not supported: spec.nodeName" {
		t.Fatalf("unsupported field: %v", err)
	}
	_, err = e.cs.CoreV1().ConfigMaps("default").List(e.ctx, metav1.ListOptions{LabelSelector: "a in in"})
	if !apierrors.IsBadRequest(err) {
		t.Fatalf("bad label selector: %v", err)
	}

	// Pod field selectors.
	for _, p := range []struct{ name, node string }{{"a", "n1"}, {"b", "n2"}, {"c", ""}} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name}, Spec: corev1.PodSpec{NodeName: p.node,
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		if _, err := e.cs.CoreV1().Pods("default").Create(e.ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pods, err := e.cs.CoreV1().Pods("").List(e.ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n2,status.phase=Pending"})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Name != "b" {
		t.Fatalf("pod field selector: %v %+v", err, pods)
	}
	pods, err = e.cs.CoreV1().Pods("").List(e.ctx, metav1.ListOptions{FieldSelector: "spec.nodeName="})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Name != "c" {
		t.Fatalf("unscheduled pods: %v %+v", err, pods)
	}
}

func TestListPagination(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	for i := 0; i < 7; i++ {
		if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, configMap(fmt.Sprintf("cm%d", i), nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var (
		got   []string
		cont  string
		rv    string
		pages int
	)
	for {
		l, err := e.cs.CoreV1().ConfigMaps("default").List(e.ctx, metav1.ListOptions{Limit: 3, Continue: cont})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if rv == "" {
			rv = l.ResourceVersion
			// A write between pages does not change the list's resourceVersion.
			if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, configMap("zz-late", nil), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		} else if l.ResourceVersion != rv {
			t.Fatalf("page resourceVersion %s, first page %s", l.ResourceVersion, rv)
		}
		for _, it := range l.Items {
			got = append(got, it.Name)
		}
		if l.Continue == "" {
			break
		}
		if l.RemainingItemCount == nil || *l.RemainingItemCount <= 0 {
			t.Fatalf("remainingItemCount: %v", l.RemainingItemCount)
		}
		cont = l.Continue
	}
	if pages != 3 || fmt.Sprint(got) != "[cm0 cm1 cm2 cm3 cm4 cm5 cm6 zz-late]" {
		t.Fatalf("pages %d: %v", pages, got)
	}
	e.do("GET", "/api/v1/namespaces/default/configmaps?limit=2&continue=garbage!", "", nil).status(t, 400, metav1.StatusReasonBadRequest)

	// resourceVersion semantics.
	l, err := e.cs.CoreV1().ConfigMaps("default").List(e.ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil || len(l.Items) != 8 {
		t.Fatalf("rv=0: %v", err)
	}
	n, _ := strconv.Atoi(l.ResourceVersion)
	l, err = e.cs.CoreV1().ConfigMaps("default").List(e.ctx, metav1.ListOptions{ResourceVersion: strconv.Itoa(n), ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
	if err != nil || len(l.Items) != 8 {
		t.Fatalf("rv=N NotOlderThan: %v", err)
	}
	_, err = e.cs.CoreV1().ConfigMaps("default").List(e.ctx, metav1.ListOptions{ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("rvMatch without rv: %v", err)
	}
}

func TestTableOutput(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, configMap("t", map[string]string{"a": "1", "b": "2"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	accept := "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
	for _, path := range []string{"/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/configmaps/t"} {
		r := e.do("GET", path, "", nil, "Accept", accept)
		var tbl metav1.Table
		if err := json.Unmarshal(r.body, &tbl); err != nil || r.code != 200 {
			t.Fatalf("%s: %d %v %s", path, r.code, err, r.body)
		}
		if tbl.Kind != "Table" || tbl.APIVersion != "meta.k8s.io/v1" || len(tbl.ColumnDefinitions) != 3 ||
			tbl.ColumnDefinitions[1].Name != "Data" || len(tbl.Rows) != 1 || tbl.ResourceVersion == "" {
			t.Fatalf("%s: table %s", path, r.body)
		}
		row := tbl.Rows[0]
		if row.Cells[0] != "t" || row.Cells[1] != float64(2) {
			t.Fatalf("cells %v", row.Cells)
		}
		var pom metav1.PartialObjectMetadata
		if err := json.Unmarshal(row.Object.Raw, &pom); err != nil || pom.Kind != "PartialObjectMetadata" || pom.Name != "t" {
			t.Fatalf("row object %s", row.Object.Raw)
		}
	}
	r := e.do("GET", "/api/v1/namespaces/default/configmaps?includeObject=None", "", nil, "Accept", accept)
	var tbl metav1.Table
	if err := json.Unmarshal(r.body, &tbl); err != nil || len(tbl.Rows) != 1 || tbl.Rows[0].Object.Raw != nil {
		t.Fatalf("includeObject=None: %s", r.body)
	}
	// Pods have wide columns.
	if _, err := e.cs.CoreV1().Pods("default").Create(e.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r = e.do("GET", "/api/v1/namespaces/default/pods", "", nil, "Accept", accept)
	if err := json.Unmarshal(r.body, &tbl); err != nil || len(tbl.Rows) != 1 {
		t.Fatalf("pods table: %s", r.body)
	}
	want := []string{"Name", "Ready", "Status", "Restarts", "Age", "IP", "Node"}
	for i, w := range want {
		if tbl.ColumnDefinitions[i].Name != w {
			t.Fatalf("pod column %d: %+v", i, tbl.ColumnDefinitions[i])
		}
	}
	if tbl.ColumnDefinitions[5].Priority != 1 || tbl.Rows[0].Cells[1] != "0/1" || tbl.Rows[0].Cells[2] != "Pending" {
		t.Fatalf("pod row %v", tbl.Rows[0].Cells)
	}
	// A protobuf-only Table Accept is refused (Tables are JSON only).
	e.do("GET", "/api/v1/namespaces/default/pods", "", nil, "Accept", "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io").status(t, 406, metav1.StatusReasonNotAcceptable)
}

func TestAuthErrors(t *testing.T) {
	authz := &apiservertest.FakeAuthorizer{Deny: func(_ *authUser, attrs authAttributes) string {
		if attrs.Resource == "secrets" {
			return "no secrets for you"
		}
		return ""
	}}
	e := newEnv(t, apiservertest.Options{Authorizer: authz})
	st := e.do("GET", "/api/v1/namespaces/default/secrets", "", nil).status(t, 403, metav1.StatusReasonForbidden)
	if st.Message != `secrets is forbidden: User "test-admin" cannot list resource "secrets" in API group "" in the namespace "default": no secrets for you` {
		t.Fatalf("forbidden message: %q", st.Message)
	}
	r := e.do("GET", "/api/v1/namespaces/default/configmaps", "", nil, "Authorization", "Bearer wrong")
	r.status(t, 401, metav1.StatusReasonUnauthorized)
	found := false
	for _, c := range authz.Calls() {
		if c.Verb == "list" && c.Resource == "secrets" && c.Namespace == "default" {
			found = true
		}
	}
	if !found {
		t.Fatalf("authorizer calls: %+v", authz.Calls())
	}
}

// TestListContinueCompacted follows the upstream conformance test "should
// support continue listing from the last key if the original version has
// been compacted away, though the list is inconsistent": a continue token
// older than kube-apiserver's compaction interval is 410 Expired with an
// inconsistent continue token, which lists the rest at the latest
// resourceVersion with the right remainingItemCount.
func TestListContinueCompacted(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	e := newEnv(t, apiservertest.Options{Now: now})
	const total = 40
	for i := 0; i < total; i++ {
		if _, err := e.cs.CoreV1().PodTemplates("default").Create(e.ctx, &corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("template-%04d", i)},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "test", Image: "busybox"}}}}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tpls := e.cs.CoreV1().PodTemplates("default")
	first, err := tpls.List(e.ctx, metav1.ListOptions{Limit: 4})
	if err != nil || len(first.Items) != 4 || first.RemainingItemCount == nil || *first.RemainingItemCount != total-4 {
		t.Fatalf("first page: %v %+v", err, first.ListMeta)
	}
	// Within the interval the token works.
	if _, err := tpls.List(e.ctx, metav1.ListOptions{Limit: 4, Continue: first.Continue}); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	mu.Lock()
	clock = clock.Add(6 * time.Minute)
	mu.Unlock()
	if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, configMap("later", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = tpls.List(e.ctx, metav1.ListOptions{Limit: 4, Continue: first.Continue})
	var st apierrors.APIStatus
	if !apierrors.IsResourceExpired(err) || !errors.As(err, &st) || st.Status().ListMeta.Continue == "" ||
		!strings.Contains(err.Error(), "inconsistent list") {
		t.Fatalf("expired token: %v, want 410 Expired with a continue token", err)
	}
	found := 4
	opts := metav1.ListOptions{Limit: 4, Continue: st.Status().ListMeta.Continue}
	var rv string
	for {
		l, err := tpls.List(e.ctx, opts)
		if err != nil {
			t.Fatalf("after template %d: %v", found, err)
		}
		if rv == "" {
			rv = l.ResourceVersion
			if rv == first.ResourceVersion {
				t.Fatalf("inconsistent continue kept the first page's resourceVersion %s", rv)
			}
		} else if l.ResourceVersion != rv {
			t.Fatalf("page resourceVersion %s, want %s", l.ResourceVersion, rv)
		}
		if l.Continue == "" {
			if l.RemainingItemCount != nil {
				t.Fatalf("last page with remainingItemCount %d", *l.RemainingItemCount)
			}
		} else if l.RemainingItemCount == nil || int(*l.RemainingItemCount)+len(l.Items)+found != total {
			t.Fatalf("after %d: %d items, remainingItemCount %v, want %d in all", found, len(l.Items), l.RemainingItemCount, total)
		}
		for _, it := range l.Items {
			if it.Name != fmt.Sprintf("template-%04d", found) {
				t.Fatalf("item %s, want template-%04d", it.Name, found)
			}
			found++
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	if found != total {
		t.Fatalf("found %d of %d", found, total)
	}
}
