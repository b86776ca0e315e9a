package addons_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/skiff-io/skiff/server/addons"
	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
	"github.com/skiff-io/skiff/server/controller"
	"github.com/skiff-io/skiff/server/controller/controllertest"
)

// env is a Manager against a real API server (over the FSM), with the
// masters' files kept in memory.
type env struct {
	t      *testing.T
	ctx    context.Context
	cs     kubernetes.Interface
	mgr    *addons.Manager
	mu     sync.Mutex
	files  map[string]map[string][]byte // master -> name -> content
	mtimes map[string]time.Time
	clock  time.Time
	// down: masters whose files cannot be fetched.
	down       map[string]bool
	newManager func()
}

func newEnv(t *testing.T) *env {
	srv := apiservertest.NewServer(t, apiservertest.Options{})
	cfg := srv.RESTConfig()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs := srv.Clientset(t)
	events := controller.NewEvents(cs, slog.Default())
	t.Cleanup(events.Shutdown)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, ns := range []string{"default", "kube-system"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, ctx: ctx, cs: cs, files: map[string]map[string][]byte{}, mtimes: map[string]time.Time{}, down: map[string]bool{},
		clock: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	// A new Manager, as a new leader makes (nothing cached).
	e.newManager = func() {
		e.mgr = addons.NewManager(addons.Config{
			Applier:   &addons.Applier{Client: dyn, Mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))},
			Inventory: addons.APIInventory{Discovery: disc, Client: dyn},
			Fetch: func(_ context.Context, master string, f addons.File) ([]byte, error) {
				e.mu.Lock()
				defer e.mu.Unlock()
				if e.down[master] {
					return nil, fmt.Errorf("%s unreachable", master)
				}
				b, ok := e.files[master][f.Name]
				if !ok {
					return nil, fmt.Errorf("%s: no %s", master, f.Name)
				}
				return b, nil
			},
			Events: events.Recorder("addon-manager"),
		})
	}
	e.newManager()
	return e
}

func (e *env) write(master, name, content string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.files[master] == nil {
		e.files[master] = map[string][]byte{}
	}
	e.files[master][name] = []byte(content)
	e.clock = e.clock.Add(time.Second)
	e.mtimes[master+"/"+name] = e.clock
}

func (e *env) remove(master, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.files[master], name)
}

func (e *env) sync() {
	e.t.Helper()
	e.mu.Lock()
	var sources []addons.Source
	for master, files := range e.files {
		src := addons.Source{Master: master}
		for name, b := range files {
			src.Files = append(src.Files, addons.File{Name: name, SHA256: addons.Checksum(b), Size: int64(len(b)), ModTime: e.mtimes[master+"/"+name]})
		}
		sources = append(sources, src)
	}
	e.mu.Unlock()
	if err := e.mgr.Sync(e.ctx, sources, true); err != nil {
		e.t.Fatalf("sync: %v", err)
	}
}

func (e *env) status(addon string) addons.Status {
	e.t.Helper()
	for _, s := range e.mgr.Status() {
		if s.Addon == addon {
			return s
		}
	}
	e.t.Fatalf("no status for %s in %+v", addon, e.mgr.Status())
	return addons.Status{}
}

func (e *env) configMap(ns, name string) (*corev1.ConfigMap, error) {
	return e.cs.CoreV1().ConfigMaps(ns).Get(e.ctx, name, metav1.GetOptions{})
}

const demo = `apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: busybox}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: demo}
data: {level: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: seed
  namespace: demo
  labels: {addonmanager.kubernetes.io/mode: EnsureExists}
data: {level: "1"}
`

func TestManagerReconcilesEnsuresExistsAndPrunes(t *testing.T) {
	e := newEnv(t)
	e.write("m2", "demo.yaml", fmt.Sprintf(demo, 1))
	e.sync()
	st := e.status("demo")
	if st.State != addons.StateApplied || st.Objects != 4 || st.Mode != "Mixed" || st.File != "demo.yaml" || st.Masters[0] != "m2" {
		t.Fatalf("status after the first pass: %+v", st)
	}
	cm, err := e.configMap("demo", "settings")
	if err != nil {
		t.Fatal(err)
	}
	if cm.Labels[addons.LabelAddon] != "demo" || cm.Annotations[addons.AnnotationLastApplied] == "" {
		t.Fatalf("settings not labelled or without last-applied: %+v", cm.ObjectMeta)
	}

	// A pass with nothing changed writes nothing (defaults the API set
	// are not fought over).
	rvs := func() string {
		d, err := e.cs.AppsV1().Deployments("demo").Get(e.ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ns, err := e.cs.CoreV1().Namespaces().Get(e.ctx, "demo", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.ResourceVersion + "/" + ns.ResourceVersion
	}
	before := rvs()
	e.sync()
	if after := rvs(); after != before {
		t.Errorf("a pass without changes updated objects: resourceVersions %s, then %s", before, after)
	}

	// Edits in the API: a field the manifest sets is restored (Reconcile),
	// a label it does not set is kept; an EnsureExists object keeps them.
	cm.Data["level"] = "9"
	cm.Labels["team"] = "ops"
	if _, err := e.cs.CoreV1().ConfigMaps("demo").Update(e.ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	seed, err := e.configMap("demo", "seed")
	if err != nil {
		t.Fatal(err)
	}
	seed.Data["level"] = "9"
	if _, err := e.cs.CoreV1().ConfigMaps("demo").Update(e.ctx, seed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.sync()
	if cm, _ = e.configMap("demo", "settings"); cm.Data["level"] != "1" || cm.Labels["team"] != "ops" {
		t.Errorf("settings after the pass: data %v labels %v; want level 1 restored and team kept", cm.Data, cm.Labels)
	}
	if seed, _ = e.configMap("demo", "seed"); seed.Data["level"] != "9" {
		t.Errorf("EnsureExists seed was updated: %v", seed.Data)
	}

	// A deleted object comes back, in either mode.
	for _, name := range []string{"settings", "seed"} {
		if err := e.cs.CoreV1().ConfigMaps("demo").Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.sync()
	for _, name := range []string{"settings", "seed"} {
		if _, err := e.configMap("demo", name); err != nil {
			t.Errorf("%s not recreated: %v", name, err)
		}
	}

	// The file changes: a new replica count, and the ConfigMaps dropped.
	// The Reconcile one is deleted, the EnsureExists one stays.
	doc := fmt.Sprintf(demo, 2)
	e.write("m2", "demo.yaml", doc[:strings.Index(doc, "---\napiVersion: v1\nkind: ConfigMap")])
	e.sync()
	d, err := e.cs.AppsV1().Deployments("demo").Get(e.ctx, "web", metav1.GetOptions{})
	if err != nil || *d.Spec.Replicas != 2 {
		t.Fatalf("deployment after the edit: %v %v", d, err)
	}
	if _, err := e.configMap("demo", "settings"); !apierrors.IsNotFound(err) {
		t.Errorf("settings, dropped from the manifest, still there: %v", err)
	}
	if _, err := e.configMap("demo", "seed"); err != nil {
		t.Errorf("EnsureExists seed deleted: %v", err)
	}

	// A bad file fails alone; a kind the API does not serve is reported.
	e.write("m1", "bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: demo}\n")
	e.write("m1", "widget.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: w, namespace: demo}\n")
	e.sync()
	if st := e.status("bad"); st.State != addons.StateFailed || !strings.Contains(st.Message, "no metadata.name") {
		t.Errorf("bad.yaml: %+v", st)
	}
	if st := e.status("widget"); st.State != addons.StateFailed || !strings.Contains(st.Message, "not served") {
		t.Errorf("widget.yaml: %+v", st)
	}
	if _, err := e.configMap("demo", "w"); err != nil {
		t.Errorf("widget.yaml's ConfigMap not applied: %v", err)
	}
	if st := e.status("demo"); st.State != addons.StateApplied {
		t.Errorf("demo after others failed: %+v", st)
	}

	// The file is removed: its Reconcile objects are deleted.
	e.remove("m2", "demo.yaml")
	e.sync()
	if _, err := e.cs.AppsV1().Deployments("demo").Get(e.ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("deployment of a removed file: %v", err)
	}
	if ns, err := e.cs.CoreV1().Namespaces().Get(e.ctx, "demo", metav1.GetOptions{}); err == nil && ns.DeletionTimestamp == nil {
		t.Errorf("namespace of a removed file not deleted")
	}

	// The outcome is in events on the Addon reference.
	if err := controllertest.Poll(10*time.Second, func() error {
		evs, err := e.cs.CoreV1().Events("kube-system").List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Kind == "Addon" {
				seen[ev.InvolvedObject.Name+"/"+ev.Reason] = true
			}
		}
		for _, want := range []string{"demo/" + addons.ReasonApplied, "bad/" + addons.ReasonFailed, "demo/" + addons.ReasonRemoved} {
			if !seen[want] {
				return fmt.Errorf("no event %s in %v", want, seen)
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

func TestManagerNewestCopyWinsBetweenMasters(t *testing.T) {
	e := newEnv(t)
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared, namespace: default}\ndata: {from: %s}\n"
	e.write("m1", "shared.yaml", fmt.Sprintf(cm, "m1"))
	e.write("m3", "shared.yaml", fmt.Sprintf(cm, "m3"))
	e.sync()
	got, err := e.configMap("default", "shared")
	if err != nil || got.Data["from"] != "m3" {
		t.Fatalf("shared: %v %v, want m3's (newest) copy", got, err)
	}
	if st := e.status("shared"); !strings.Contains(st.Message, "differs between masters") {
		t.Errorf("status does not report the conflict: %+v", st)
	}
}

func TestManagerObjectTwiceInOneFileLastWins(t *testing.T) {
	e := newEnv(t)
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: twice}\ndata: {v: %q}\n"
	e.write("m1", "twice.yaml", fmt.Sprintf(cm, "1")+"---\n"+fmt.Sprintf(cm, "2"))
	e.sync()
	got, err := e.configMap("default", "twice")
	if err != nil || got.Data["v"] != "2" {
		t.Fatalf("twice: %v %v, want the last definition", got, err)
	}
	if st := e.status("twice"); st.State != addons.StateApplied {
		t.Errorf("status: %+v", st)
	}
}

// A new leader that cannot reach the master holding a manifest leaves its
// objects as they are (nothing deleted) and says so.
func TestManagerKeepsObjectsOfUnreachableMaster(t *testing.T) {
	e := newEnv(t)
	e.write("m2", "demo.yaml", fmt.Sprintf(demo, 1))
	e.sync()
	e.mu.Lock()
	e.down["m2"] = true
	e.mu.Unlock()
	e.newManager()
	e.sync()
	if st := e.status("demo"); st.State != addons.StateUnavailable || !strings.Contains(st.Message, "m2 unreachable") {
		t.Errorf("status: %+v", st)
	}
	if _, err := e.cs.AppsV1().Deployments("demo").Get(e.ctx, "web", metav1.GetOptions{}); err != nil {
		t.Errorf("deployment of an unreachable master's manifest: %v", err)
	}
	if _, err := e.configMap("demo", "settings"); err != nil {
		t.Errorf("configmap of an unreachable master's manifest: %v", err)
	}
}
