package addons

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestParseDocumentsListsAndJSON(t *testing.T) {
	yamlDocs := `
# a comment only document
---
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a, namespace: demo}
  data: {n: "1"}
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: b
    labels: {addonmanager.kubernetes.io/mode: EnsureExists}
`
	objs, err := Parse("demo", []byte(yamlDocs))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName()+"/"+o.GetLabels()[LabelAddon])
	}
	if want := "Namespace/demo/demo ConfigMap/a/demo ConfigMap/b/demo"; strings.Join(got, " ") != want {
		t.Fatalf("parsed %v, want %s", got, want)
	}
	if m, _ := ModeOf(objs[2]); m != ModeEnsureExists {
		t.Errorf("mode of b = %s", m)
	}
	if m, _ := ModeOf(objs[1]); m != ModeReconcile {
		t.Errorf("mode of a = %s", m)
	}
	// Integers stay integers (as kubectl decodes them).
	js := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":3}}`
	objs, err = Parse("web", []byte(js))
	if err != nil || len(objs) != 1 {
		t.Fatalf("json: %v %v", objs, err)
	}
	if n, ok, _ := unstructured.NestedInt64(objs[0].Object, "spec", "replicas"); !ok || n != 3 {
		t.Errorf("replicas = %v %v", n, ok)
	}
}

func TestParseErrors(t *testing.T) {
	for name, tc := range map[string]struct{ addon, content, want string }{
		"no kind":     {"a", "apiVersion: v1\nmetadata: {name: x}\n", "document 1: Object 'Kind' is missing"},
		"no name":     {"a", "apiVersion: v1\nkind: ConfigMap\n", "ConfigMap has no metadata.name"},
		"bad mode":    {"a", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: {addonmanager.kubernetes.io/mode: Sometimes}\n", `"Sometimes"`},
		"bad yaml":    {"a", "apiVersion: v1\nkind: [\n", "document 1"},
		"second doc":  {"a", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\nkind: ConfigMap\n", "document 2: no apiVersion"},
		"bad addon":   {"my addon", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n", "not a valid label value"},
		"list item":   {"a", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n", "document 1, item 1"},
		"not objects": {"a", "- 1\n- 2\n", "document 1"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(tc.addon, []byte(tc.content))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestScanExtensionsAndSkip(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "x")
	write("b.yml", "y")
	write("c.json", "{}")
	write("notes.txt", "ignored")
	write(".hidden.yaml", "ignored")
	write("d.yaml", "disabled")
	write("d.yaml.skip", "")
	write("gone.yaml.skip", "")
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o700); err != nil {
		t.Fatal(err)
	}
	files, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		s := f.Name
		if f.Skipped {
			s += "(skipped)"
		}
		got = append(got, s)
	}
	if want := "a.yaml b.yml c.json d.yaml(skipped) gone.yaml(skipped)"; strings.Join(got, " ") != want {
		t.Fatalf("scanned %v, want %s", got, want)
	}
	if files[0].SHA256 != Checksum([]byte("x")) || string(files[0].Content) != "x" || files[0].Addon() != "a" {
		t.Errorf("a.yaml: %+v", files[0])
	}
	if files[3].Content != nil || files[3].SHA256 != "" {
		t.Errorf("a skipped file's content is read: %+v", files[3])
	}
	if files, err := Scan(filepath.Join(dir, "missing")); err != nil || len(files) != 0 {
		t.Errorf("missing dir: %v %v", files, err)
	}
}

func TestSortForApplyPutsDependenciesFirst(t *testing.T) {
	var objs []*unstructured.Unstructured
	for _, k := range []string{"Deployment", "Widget", "ConfigMap", "Service", "Namespace", "ServiceAccount", "ClusterRoleBinding"} {
		o := &unstructured.Unstructured{}
		o.SetKind(k)
		objs = append(objs, o)
	}
	SortForApply(objs)
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind())
	}
	if want := "Namespace ServiceAccount ClusterRoleBinding ConfigMap Service Deployment Widget"; strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}

func TestResolveNewestCopyWinsAndSkipDisables(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	plans := resolve([]Source{
		{Master: "m1", Files: []File{{Name: "dns.yaml", SHA256: "old", ModTime: t0}, {Name: "same.yaml", SHA256: "s", ModTime: t0}}},
		{Master: "m2", Files: []File{{Name: "dns.yaml", SHA256: "new", ModTime: t0.Add(time.Hour)}, {Name: "same.yaml", SHA256: "s", ModTime: t0.Add(time.Minute)}}},
		{Master: "m3", Files: []File{{Name: "dns.yaml", SHA256: "new", ModTime: t0.Add(time.Hour)}, {Name: "off.yaml", Skipped: true},
			{Name: "perm.yaml", Error: "permission denied", ModTime: t0.Add(time.Hour)}}},
		{Master: "m4", Files: []File{{Name: "perm.yaml", SHA256: "ok", ModTime: t0}}},
	})
	if perm := plans["perm"]; perm.winner.master != "m4" {
		t.Errorf("perm: an unreadable newer copy won over a readable one: %+v", perm.winner)
	}
	dns := plans["dns"]
	if dns.winner.master != "m2" || dns.winner.file.SHA256 != "new" || strings.Join(dns.holders, ",") != "m2,m3" {
		t.Errorf("dns: winner %+v holders %v", dns.winner, dns.holders)
	}
	if !strings.Contains(dns.conflict, "m1:dns.yaml") {
		t.Errorf("dns conflict message %q does not name m1's copy", dns.conflict)
	}
	if same := plans["same"]; same.conflict != "" || len(same.holders) != 2 {
		t.Errorf("same content on two masters: %+v", same)
	}
	if off := plans["off"]; len(off.skipped) != 1 {
		t.Errorf("off: %+v", off)
	}
}
