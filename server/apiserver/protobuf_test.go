package apiserver_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

const protoMedia = "application/vnd.kubernetes.protobuf"

// contentTypes records the Content-Type of every response by request.
type contentTypes struct {
	mu   sync.Mutex
	seen []string // "METHOD path[?watch] -> content-type"
	rt   http.RoundTripper
}

func (c *contentTypes) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err == nil {
		what := r.Method + " " + r.URL.Path
		if r.URL.Query().Get("watch") != "" {
			what += "?watch"
		}
		c.mu.Lock()
		c.seen = append(c.seen, what+" -> "+resp.Header.Get("Content-Type"))
		c.mu.Unlock()
	}
	return resp, err
}

// check fails unless every response was protobuf (watches in the watch
// stream form), and returns what was seen.
func (c *contentTypes) check(t *testing.T) []string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.seen {
		want := protoMedia
		if strings.Contains(s, "?watch ") {
			want = protoMedia + ";stream=watch"
		}
		if !strings.HasSuffix(s, " -> "+want) {
			t.Errorf("not protobuf: %s", s)
		}
	}
	return append([]string(nil), c.seen...)
}

// protoClientset is a clientset that asks for protobuf only (with client-go's
// ", */*" fallback), as kube-controller-manager and the kubelet do, and
// records the answers' content types.
func protoClientset(t *testing.T, srv *apiservertest.Server) (*kubernetes.Clientset, *contentTypes) {
	t.Helper()
	cfg := srv.RESTConfig()
	cfg.ContentType = protoMedia
	ct := &contentTypes{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { ct.rt = rt; return ct })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, ct
}

// TestProtobufClientset drives a protobuf clientset through the verbs and an
// informer of ConfigMaps and Pods: every answer, the watch streams
// included, is protobuf.
func TestProtobufClientset(t *testing.T) {
	e := newEnv(t, apiservertest.Options{BookmarkIdle: 200 * time.Millisecond})
	cs, ct := protoClientset(t, e.srv)
	ctx := e.ctx

	cms := cs.CoreV1().ConfigMaps("default")
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if cm.UID == "" || cm.ResourceVersion == "" || cm.Data["k"] != "v" {
		t.Fatalf("created: %+v", cm)
	}
	got, err := cms.Get(ctx, "a", metav1.GetOptions{})
	if err != nil || got.UID != cm.UID || got.Data["k"] != "v" {
		t.Fatalf("get: %v %+v", err, got)
	}
	got.Data["k"] = "w"
	upd, err := cms.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil || upd.Data["k"] != "w" || upd.ResourceVersion == got.ResourceVersion {
		t.Fatalf("update: %v %+v", err, upd)
	}
	list, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 || list.Items[0].Data["k"] != "w" || list.ResourceVersion == "" {
		t.Fatalf("list: %v %+v", err, list)
	}
	if _, err := cms.Get(ctx, "missing", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get missing: %v", err)
	}
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}

	pods := cs.CoreV1().Pods("default")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	p, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil || p.Status.Phase != corev1.PodPending {
		t.Fatalf("create pod: %v %+v", err, p)
	}
	p.Labels["v"] = "2"
	if p, err = pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil || p.Labels["v"] != "2" {
		t.Fatalf("update pod: %v", err)
	}
	if pl, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "app=x"}); err != nil || len(pl.Items) != 1 {
		t.Fatalf("list pods: %v %+v", err, pl)
	}

	// Informers: list+watch (watch-list with its bookmark) of both kinds.
	f := informers.NewSharedInformerFactory(cs, 0)
	cmInf, podInf := f.Core().V1().ConfigMaps(), f.Core().V1().Pods()
	cmInf.Informer()
	podInf.Informer()
	stop := make(chan struct{})
	f.Start(stop)
	defer f.Shutdown()
	defer close(stop)
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("informer of %v did not sync", typ)
		}
	}
	if _, err := podInf.Lister().Pods("default").Get("p"); err != nil {
		t.Fatalf("informer misses the pod: %v", err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Data: map[string]string{"n": "1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "informer sees configmap b", func() bool {
		c, err := cmInf.Lister().ConfigMaps("default").Get("b")
		return err == nil && c.Data["n"] == "1"
	})
	if err := pods.Delete(ctx, "p", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatalf("delete pod: %v", err)
	}
	waitFor(t, "informer sees pod p go", func() bool {
		_, err := podInf.Lister().Pods("default").Get("p")
		return apierrors.IsNotFound(err)
	})

	// A plain watch with bookmarks decodes its events and bookmarks.
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion, AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var added, deleted, bookmark bool
	deadline := time.After(20 * time.Second)
	for !(added && deleted && bookmark) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch ended")
			}
			c, isCM := ev.Object.(*corev1.ConfigMap)
			if !isCM {
				t.Fatalf("event %s of %T", ev.Type, ev.Object)
			}
			switch ev.Type {
			case watch.Added:
				added = added || c.Name == "b" && c.Data["n"] == "1"
			case watch.Deleted:
				deleted = deleted || c.Name == "a"
			case watch.Bookmark:
				bookmark = c.ResourceVersion != ""
			}
		case <-deadline:
			t.Fatalf("watch events: added %v deleted %v bookmark %v", added, deleted, bookmark)
		}
	}

	seen := ct.check(t)
	var watches int
	for _, s := range seen {
		if strings.Contains(s, "?watch ") {
			watches++
		}
	}
	if watches < 3 || len(seen) < 12 {
		t.Fatalf("expected the verbs and three watches, saw %q", seen)
	}
}

// protoBody strips the protobuf envelope of an answer, returning its kind
// and raw message.
func protoBody(t *testing.T, r rawResponse) (string, []byte) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != protoMedia {
		t.Fatalf("content type %q, want protobuf (%d): %q", ct, r.code, r.body)
	}
	if !bytes.HasPrefix(r.body, []byte("k8s\x00")) {
		t.Fatalf("no protobuf magic: %q", r.body)
	}
	var u runtime.Unknown
	if err := u.Unmarshal(r.body[4:]); err != nil {
		t.Fatalf("envelope: %v", err)
	}
	return u.APIVersion + "/" + u.Kind, u.Raw
}

func isJSON(t *testing.T, r rawResponse) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" || !bytes.HasPrefix(r.body, []byte("{")) {
		t.Fatalf("content type %q, want JSON (%d): %q", ct, r.code, r.body)
	}
}

// TestProtobufNegotiation: the Accept header's q-values and order choose
// the media type as kube-apiserver's negotiation does; Tables stay JSON;
// PartialObjectMetadataList and errors come in protobuf when asked for.
func TestProtobufNegotiation(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const obj = "/api/v1/namespaces/default/configmaps/x"
	get := func(path, accept string) rawResponse {
		return e.do("GET", path, "", nil, "Accept", accept)
	}
	for _, accept := range []string{
		protoMedia + ", application/json",
		protoMedia,
		"application/json;q=0.5, " + protoMedia,
		protoMedia + ", */*",
	} {
		r := get(obj, accept)
		kind, raw := protoBody(t, r)
		var cm corev1.ConfigMap
		if err := cm.Unmarshal(raw); err != nil || kind != "v1/ConfigMap" || r.code != 200 || cm.Name != "x" || cm.Data["k"] != "v" || cm.ResourceVersion == "" {
			t.Fatalf("Accept %q: %s %v %+v", accept, kind, err, cm)
		}
	}
	for _, accept := range []string{
		"application/json, " + protoMedia,
		"*/*",
		"",
		protoMedia + ";q=0.1, application/json;q=0.9",
		"application/*",
	} {
		isJSON(t, get(obj, accept))
	}
	// Lists.
	kind, raw := protoBody(t, get("/api/v1/namespaces/default/configmaps", protoMedia+", application/json"))
	var cml corev1.ConfigMapList
	if err := cml.Unmarshal(raw); err != nil || kind != "v1/ConfigMapList" || len(cml.Items) != 1 || cml.ResourceVersion == "" {
		t.Fatalf("list: %s %v %+v", kind, err, cml)
	}
	// Tables are JSON only: a protobuf Table clause is skipped.
	table := ";as=Table;g=meta.k8s.io;v=v1"
	isJSON(t, get("/api/v1/namespaces/default/configmaps", protoMedia+table+", application/json"+table))
	get("/api/v1/namespaces/default/configmaps", protoMedia+table).status(t, 406, metav1.StatusReasonNotAcceptable)
	// PartialObjectMetadataList in protobuf, as the metadata informers ask.
	pom := ";as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
	kind, raw = protoBody(t, get("/api/v1/namespaces/default/configmaps", protoMedia+pom+", application/json"+pom+", application/json"))
	var pl metav1.PartialObjectMetadataList
	if err := pl.Unmarshal(raw); err != nil || kind != "meta.k8s.io/v1/PartialObjectMetadataList" || len(pl.Items) != 1 || pl.Items[0].Name != "x" {
		t.Fatalf("metadata list: %s %v %+v", kind, err, pl)
	}
	// Errors come as a protobuf Status when protobuf is preferred.
	r := get("/api/v1/namespaces/default/configmaps/missing", protoMedia+", application/json")
	kind, raw = protoBody(t, r)
	var st metav1.Status
	if err := st.Unmarshal(raw); err != nil || kind != "v1/Status" || r.code != 404 || st.Code != 404 || st.Reason != metav1.StatusReasonNotFound {
		t.Fatalf("error: %d %s %v %+v", r.code, kind, err, st)
	}
	get("/api/v1/namespaces/default/configmaps/missing", "application/json, "+protoMedia).status(t, 404, metav1.StatusReasonNotFound)
	// Something else only: 406.
	get(obj, "text/html").status(t, 406, metav1.StatusReasonNotAcceptable)
}

// TestProtobufCustomResource: a custom resource has no protobuf form; it is
// served as JSON when JSON is acceptable, 406 when only protobuf is.
func TestProtobufCustomResource(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	if r := e.do(http.MethodPost, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "application/json", []byte(widgetCRD)); r.code != http.StatusCreated {
		t.Fatalf("create CRD: %d %s", r.code, r.body)
	}
	const list = "/apis/example.com/v1/namespaces/default/widgets"
	waitFor(t, "widgets served", func() bool {
		return e.do(http.MethodPost, list, "application/json",
			[]byte(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{}}`)).code == http.StatusCreated
	})
	for _, path := range []string{list, list + "/w"} {
		isJSON(t, e.do("GET", path, "", nil, "Accept", protoMedia+", application/json"))
		isJSON(t, e.do("GET", path, "", nil, "Accept", protoMedia+", */*"))
		r := e.do("GET", path, "", nil, "Accept", protoMedia)
		kind, raw := protoBody(t, r)
		var st metav1.Status
		if err := st.Unmarshal(raw); err != nil || kind != "v1/Status" || r.code != 406 || st.Reason != metav1.StatusReasonNotAcceptable {
			t.Fatalf("%s protobuf only: %d %s %v %+v", path, r.code, kind, err, st)
		}
	}
	// Their metadata has a protobuf form.
	kind, _ := protoBody(t, e.do("GET", list, "", nil, "Accept", protoMedia+";as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"))
	if kind != "meta.k8s.io/v1/PartialObjectMetadataList" {
		t.Fatalf("metadata list kind %s", kind)
	}
}

// TestProtobufMetadataClient: client-go's metadata client (the garbage
// collector's and the metadata informers') gets, lists and watches
// PartialObjectMetadata in protobuf, of built-in kinds and of custom
// resources alike.
func TestProtobufMetadataClient(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	if r := e.do(http.MethodPost, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "application/json", []byte(widgetCRD)); r.code != http.StatusCreated {
		t.Fatalf("create CRD: %d %s", r.code, r.body)
	}
	waitFor(t, "widgets served", func() bool {
		return e.do(http.MethodPost, "/apis/example.com/v1/namespaces/default/widgets", "application/json",
			[]byte(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{}}`)).code == http.StatusCreated
	})
	if _, err := e.cs.CoreV1().ConfigMaps("default").Create(e.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "w"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := e.srv.RESTConfig()
	ct := &contentTypes{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { ct.rt = rt; return ct })
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, gvr := range []schema.GroupVersionResource{
		{Version: "v1", Resource: "configmaps"},
		{Group: "example.com", Version: "v1", Resource: "widgets"},
	} {
		ri := mc.Resource(gvr).Namespace("default")
		m, err := ri.Get(e.ctx, "w", metav1.GetOptions{})
		if err != nil || m.Name != "w" || m.UID == "" {
			t.Fatalf("%s get: %v %+v", gvr, err, m)
		}
		l, err := ri.List(e.ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) != 1 || l.ResourceVersion == "" {
			t.Fatalf("%s list: %v %+v", gvr, err, l)
		}
		w, err := ri.Watch(e.ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("%s watch: %v", gvr, err)
		}
		select {
		case ev := <-w.ResultChan():
			pm, ok := ev.Object.(*metav1.PartialObjectMetadata)
			if ev.Type != watch.Added || !ok || pm.Name != "w" {
				t.Fatalf("%s watch event %s %T %+v", gvr, ev.Type, ev.Object, ev.Object)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s watch: no event", gvr)
		}
		w.Stop()
	}
	if seen := ct.check(t); len(seen) != 6 {
		t.Fatalf("requests: %q", seen)
	}
}
