package apiserver_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Helpers for the tests of kinds served like kube-apiserver's (the
// conformance suite's API operation tests): discovery, Table columns and
// the dynamic client.

// wantDiscovered fails unless gv serves each resource ("flowschemas",
// "flowschemas/status") in the per-group-version list, and the aggregated
// discovery document (v2 and v2beta1) has the resource with its
// subresources.
func wantDiscovered(t *testing.T, e *env, gv schema.GroupVersion, resources ...string) {
	t.Helper()
	path := "/apis/" + gv.String()
	if gv.Group == "" {
		path = "/api/" + gv.Version
	}
	r := e.do(http.MethodGet, path, "", nil)
	if r.code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.code, r.body)
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	served := map[string]metav1.APIResource{}
	for _, res := range list.APIResources {
		served[res.Name] = res
	}
	for _, res := range resources {
		if _, ok := served[res]; !ok {
			t.Errorf("%s does not list %s", path, res)
		}
	}
	if gv.Group != "" {
		r = e.do(http.MethodGet, "/apis/"+gv.Group, "", nil)
		if r.code != http.StatusOK || !strings.Contains(string(r.body), `"groupVersion":"`+gv.String()+`"`) {
			t.Errorf("GET /apis/%s: %d %s", gv.Group, r.code, r.body)
		}
	}
	root := "/apis"
	if gv.Group == "" {
		root = "/api"
	}
	wantOpenAPI(t, e, gv, resources...)
	for _, v := range []string{"v2", "v2beta1"} {
		r = e.do(http.MethodGet, root, "", nil, "Accept", "application/json;g=apidiscovery.k8s.io;v="+v+";as=APIGroupDiscoveryList")
		var agg apidiscoveryv2.APIGroupDiscoveryList
		if err := json.Unmarshal(r.body, &agg); err != nil {
			t.Fatalf("aggregated %s: %v", v, err)
		}
		found := map[string]bool{}
		for _, g := range agg.Items {
			if g.Name != gv.Group {
				continue
			}
			for _, ver := range g.Versions {
				if ver.Version != gv.Version {
					continue
				}
				for _, res := range ver.Resources {
					found[res.Resource] = true
					for _, sub := range res.Subresources {
						found[res.Resource+"/"+sub.Subresource] = true
					}
				}
			}
		}
		for _, res := range resources {
			if !found[res] {
				t.Errorf("aggregated discovery %s has no %s in %s", v, res, gv)
			}
		}
	}
}

// wantOpenAPI fails unless the OpenAPI v3 document of gv has the paths
// of each resource ("x": /x/{name}, "x/status": /x/{name}/status).
func wantOpenAPI(t *testing.T, e *env, gv schema.GroupVersion, resources ...string) {
	t.Helper()
	path := "/openapi/v3/apis/" + gv.String()
	if gv.Group == "" {
		path = "/openapi/v3/api/" + gv.Version
	}
	r := e.do(http.MethodGet, path, "", nil)
	if r.code != http.StatusOK {
		t.Fatalf("GET %s: %d", path, r.code)
	}
	for _, res := range resources {
		want := "/" + res + "/{name}\""
		if base, sub, ok := strings.Cut(res, "/"); ok {
			want = "/" + base + "/{name}/" + sub + "\""
		}
		if !strings.Contains(string(r.body), want) {
			t.Errorf("%s has no path ending %s", path, want)
		}
	}
}

// tableOf GETs path as a Table and returns its column names and the cells
// of its rows.
func tableOf(t *testing.T, e *env, path string) ([]string, [][]any) {
	t.Helper()
	r := e.do(http.MethodGet, path, "", nil, "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	if r.code != http.StatusOK {
		t.Fatalf("table %s: %d %s", path, r.code, r.body)
	}
	var tbl metav1.Table
	if err := json.Unmarshal(r.body, &tbl); err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range tbl.ColumnDefinitions {
		cols = append(cols, c.Name)
	}
	var rows [][]any
	for _, row := range tbl.Rows {
		rows = append(rows, row.Cells)
	}
	return cols, rows
}

func wantColumns(t *testing.T, e *env, path string, want ...string) [][]any {
	t.Helper()
	cols, rows := tableOf(t, e, path)
	if !slices.Equal(cols, want) {
		t.Errorf("%s columns %v, want %v", path, cols, want)
	}
	for _, row := range rows {
		if len(row) != len(cols) {
			t.Errorf("%s row %v has %d cells for %d columns", path, row, len(row), len(cols))
		}
	}
	return rows
}

func dynamicClient(t *testing.T, e *env) dynamic.Interface {
	t.Helper()
	dc, err := dynamic.NewForConfig(e.srv.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return dc
}
