package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// gadgetCRDYAML is a custom resource with a printer column (Color) that
// the generic list view must show.
const gadgetCRDYAML = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.dash.example.com
spec:
  group: dash.example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Color, type: string, jsonPath: .spec.color}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              color: {type: string}
`

// setValue replaces a textarea's text.
func setValue(t *testing.T, ctx context.Context, sel, text string) {
	t.Helper()
	if _, err := evaluate[bool](ctx, "(document.querySelector("+strconv.Quote(sel)+").value = "+strconv.Quote(text)+", true)"); err != nil {
		t.Fatal(err)
	}
}

// TestDashboardCreateEdit: YAML pasted in the create view is dry-run (an
// invalid name shows the API's field cause, nothing is saved) and applied
// (server-side apply: a ConfigMap and a CRD); the CRD's objects show in
// the generic list with their printer column and live updates; the
// detail's Edit saves a change and shows a 409 when the object changed
// meanwhile; a view token sees neither Create nor Edit actions.
func TestDashboardCreateEdit(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "create"})
	m.Start()
	m.WaitReady(60 * time.Second)
	cs := m.Clientset()
	bg := context.Background()
	// skiff dashboard binds bootstrap cluster roles, which the leader
	// writes just after it is ready.
	if err := testutil.Poll(30*time.Second, func() error {
		for _, r := range []string{"cluster-admin", "view"} {
			if _, err := cs.RbacV1().ClusterRoles().Get(bg, r, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		_, err := cs.CoreV1().Namespaces().Get(bg, "kube-system", metav1.GetOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_, token := dashboardToken(t, m, "cluster-admin")
	browser := newBrowser(t)
	ctx := tab(t, browser)
	base := m.URL()

	login(t, ctx, base, "/ui/create", token)
	run(t, ctx, "create view", chromedp.WaitVisible(chromedp.CSS(`[data-action="dry-run"]`)))

	// A dry run of an invalid name: the field cause is shown.
	setValue(t, ctx, "#yaml-input", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\ndata:\n  a: b\n")
	run(t, ctx, "dry run", chromedp.Click(chromedp.CSS(`[data-action="dry-run"]`)))
	waitText(t, ctx, `#create-results [data-result="error"] [data-field="metadata.name"]`, "metadata.name")
	screenshot(t, ctx, "dry-run-error")

	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels: {app: dash}\ndata:\n  mode: fast\n"
	setValue(t, ctx, "#yaml-input", cm+"---\n"+gadgetCRDYAML)
	run(t, ctx, "dry run", chromedp.Click(chromedp.CSS(`[data-action="dry-run"]`)))
	waitText(t, ctx, `#create-results[data-done="dry-run"]`, "ConfigMap settings: valid (dry run", "CustomResourceDefinition gadgets.dash.example.com: valid (dry run")
	if _, err := cs.CoreV1().ConfigMaps("default").Get(bg, "settings", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after a dry run: get configmap settings: %v, want NotFound", err)
	}
	run(t, ctx, "apply", chromedp.Click(chromedp.CSS(`[data-action="apply"]`)))
	waitText(t, ctx, `#create-results[data-done="apply"]`, "ConfigMap settings: applied", "CustomResourceDefinition gadgets.dash.example.com: applied")
	screenshot(t, ctx, "applied")
	got, err := cs.CoreV1().ConfigMaps("default").Get(bg, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the applied ConfigMap: %v", err)
	}
	if got.Data["mode"] != "fast" || got.Labels["app"] != "dash" {
		t.Fatalf("the applied ConfigMap is %+v", got)
	}
	if !managedBy(got.ManagedFields, "skiff-dashboard") {
		t.Errorf("the ConfigMap's managers %+v lack skiff-dashboard", got.ManagedFields)
	}

	// Custom resources in the generic view, with their printer column.
	dyn, err := dynamic.NewForConfig(m.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	gadgets := dyn.Resource(schema.GroupVersionResource{Group: "dash.example.com", Version: "v1", Resource: "gadgets"}).Namespace("default")
	gadget := func(name, color string) {
		t.Helper()
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "dash.example.com/v1", "kind": "Gadget",
			"metadata": map[string]any{"name": name}, "spec": map[string]any{"color": color},
		}}
		if err := testutil.Poll(30*time.Second, func() error { // until the CRD is served
			_, err := gadgets.Create(bg, obj, metav1.CreateOptions{})
			return err
		}); err != nil {
			t.Fatalf("create gadget %s: %v", name, err)
		}
	}
	gadget("g1", "blue")
	run(t, ctx, "all resources", navigate(base+"/ui/resources"))
	waitText(t, ctx, "#resource-kind-list", "gadgets", "Gadget", "dash.example.com", "configmaps")
	run(t, ctx, "gadgets", chromedp.Click(chromedp.CSS(`#resource-kind-list a[href*="/r/dash.example.com/v1/gadgets"]`)))
	waitText(t, ctx, "#generic-list", "Color", "g1", "blue")
	gadget("g2", "green") // comes through the watch, no reload
	waitText(t, ctx, "#generic-list", "g2", "green")
	screenshot(t, ctx, "gadgets")

	// Edit: a saved change, then a conflict.
	run(t, ctx, "detail", chromedp.Click(chromedp.CSS(`#generic-list a[href*="/gadgets/default/g1"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-action="edit"]`)))
	waitText(t, ctx, "#yaml", "color: blue", "kind: Gadget")
	if y := waitText(t, ctx, "#yaml"); strings.Contains(y, "managedFields") {
		t.Errorf("the YAML shows managedFields:\n%s", y)
	}
	editColor := func(from, to string) {
		t.Helper()
		run(t, ctx, "edit", chromedp.Click(chromedp.CSS(`[data-action="edit"]`)), chromedp.WaitVisible(chromedp.CSS("#yaml-edit")))
		if _, err := evaluate[bool](ctx, fmt.Sprintf(`(e => (e.value = e.value.replace(%q, %q), true))(document.querySelector("#yaml-edit"))`, "color: "+from, "color: "+to)); err != nil {
			t.Fatal(err)
		}
	}
	color := func() string {
		o, err := gadgets.Get(bg, "g1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c, _, _ := unstructured.NestedString(o.Object, "spec", "color")
		return c
	}
	editColor("blue", "red")
	run(t, ctx, "save", chromedp.Click(chromedp.CSS(`[data-action="save"]`)))
	waitText(t, ctx, `#action-status [data-result="ok"]`, "Saved")
	if c := color(); c != "red" {
		t.Fatalf("after Save the gadget's color is %q, want red", c)
	}
	waitText(t, ctx, "#yaml", "color: red")
	editColor("red", "purple")
	o, err := gadgets.Get(bg, "g1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(o.Object, "yellow", "spec", "color")
	if _, err := gadgets.Update(bg, o, metav1.UpdateOptions{}); err != nil { // meanwhile
		t.Fatal(err)
	}
	run(t, ctx, "save", chromedp.Click(chromedp.CSS(`[data-action="save"]`)))
	waitText(t, ctx, `#action-status [data-result="error"] [data-code="409"]`, "Conflict")
	screenshot(t, ctx, "conflict")
	if c := color(); c != "yellow" {
		t.Fatalf("after a conflicting Save the gadget's color is %q, want yellow", c)
	}

	// A view token: no Create, no Edit.
	_, viewToken := dashboardToken(t, m, "view")
	vctx := tab(t, browser)
	login(t, vctx, base, "/ui/create", viewToken)
	run(t, vctx, "create view", chromedp.WaitVisible(chromedp.CSS(`#actions[data-decided="true"]`)))
	noActions(t, vctx)
	screenshot(t, vctx, "view-create")
	run(t, vctx, "configmap detail", navigate(base+"/ui/r/core/v1/configmaps/default/settings"),
		chromedp.WaitVisible(chromedp.CSS(`#actions[data-decided="true"]`)))
	waitText(t, vctx, "#yaml", "mode: fast")
	noActions(t, vctx)
	screenshot(t, vctx, "view-detail")
}

func noActions(t *testing.T, ctx context.Context) {
	t.Helper()
	n, err := evaluate[int](ctx, `document.querySelectorAll("[data-action]").length`)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("a view token sees %d action buttons", n)
	}
}

func managedBy(mf []metav1.ManagedFieldsEntry, manager string) bool {
	for _, e := range mf {
		if e.Manager == manager {
			return true
		}
	}
	return false
}
