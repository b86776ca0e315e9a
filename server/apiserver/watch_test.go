package apiserver_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// rawEvent is one decoded line of a watch stream.
type rawEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

func (ev rawEvent) meta(t *testing.T) metav1.ObjectMeta {
	t.Helper()
	var o struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(ev.Object, &o); err != nil {
		t.Fatal(err)
	}
	return o.Metadata
}

// rawWatch opens a watch with raw HTTP and returns its events.
func (e *env) rawWatch(path string, header ...string) (<-chan rawEvent, *http.Response) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, "GET", e.srv.HTTP.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiservertest.Token)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.srv.HTTP.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	ch := make(chan rawEvent, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		for sc.Scan() {
			var ev rawEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				ch <- ev
			}
		}
	}()
	return ch, resp
}

func next(t *testing.T, ch <-chan rawEvent) rawEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event")
	}
	return rawEvent{}
}

func expectEvent(t *testing.T, ch <-chan rawEvent, typ, name string) rawEvent {
	t.Helper()
	ev := next(t, ch)
	if ev.Type != typ || ev.meta(t).Name != name {
		t.Fatalf("got %s %s, want %s %s: %s", ev.Type, ev.meta(t).Name, typ, name, ev.Object)
	}
	return ev
}

func TestWatchResumeFromResourceVersion(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cms := e.cs.CoreV1().ConfigMaps("default")
	a, err := cms.Create(e.ctx, configMap("a", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(e.ctx, configMap("b", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(e.ctx, metav1.ListOptions{ResourceVersion: a.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ev := <-w.ResultChan()
	if ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != "b" {
		t.Fatalf("first event after %s: %+v", a.ResourceVersion, ev)
	}
	if err := cms.Delete(e.ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	ev = <-w.ResultChan()
	cm := ev.Object.(*corev1.ConfigMap)
	if ev.Type != watch.Deleted || cm.Name != "a" || cm.ResourceVersion == a.ResourceVersion {
		t.Fatalf("delete event: %s %+v", ev.Type, cm.ObjectMeta)
	}

	// The legacy /watch/ prefix and a named watch.
	ch, resp := e.rawWatch("/api/v1/watch/namespaces/default/configmaps/b?resourceVersion=0")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("watch response %d %v", resp.StatusCode, resp.Header)
	}
	expectEvent(t, ch, "ADDED", "b")
	if _, err := cms.Create(e.ctx, configMap("c", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Update(e.ctx, configMap("b", map[string]string{"x": "y"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, ch, "MODIFIED", "b")
}

func TestWatchExpired(t *testing.T) {
	e := newEnv(t, apiservertest.Options{RingSize: 4})
	cms := e.cs.CoreV1().ConfigMaps("default")
	first, err := cms.Create(e.ctx, configMap("first", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := cms.Create(e.ctx, configMap(fmt.Sprintf("cm%d", i), nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ch, resp := e.rawWatch("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=" + first.ResourceVersion)
	if resp.StatusCode != 200 {
		t.Fatalf("expired watch answers %d, want 200 with an ERROR event", resp.StatusCode)
	}
	ev := next(t, ch)
	var st metav1.Status
	if err := json.Unmarshal(ev.Object, &st); err != nil || ev.Type != "ERROR" || st.Code != 410 || st.Reason != metav1.StatusReasonExpired {
		t.Fatalf("expired event: %s %s", ev.Type, ev.Object)
	}
	want := "too old resource version: " + first.ResourceVersion + " ("
	if len(st.Message) < len(want) || st.Message[:len(want)] != want {
		t.Fatalf("message %q", st.Message)
	}

	// client-go sees a watch.Error with the 410 Status.
	w, err := cms.Watch(e.ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	cev := <-w.ResultChan()
	if s, ok := cev.Object.(*metav1.Status); cev.Type != watch.Error || !ok || s.Code != 410 {
		t.Fatalf("client-go expired: %+v", cev)
	}
}

func TestWatchSelectorTransitions(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cms := e.cs.CoreV1().ConfigMaps("default")
	ch, _ := e.rawWatch("/api/v1/namespaces/default/configmaps?watch=true&labelSelector=tier%3Dweb")
	cm := configMap("x", nil)
	cm.Labels = map[string]string{"tier": "web"}
	cm, err := cms.Create(e.ctx, cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A non-matching object is never seen.
	other := configMap("y", nil)
	other.Labels = map[string]string{"tier": "db"}
	if _, err := cms.Create(e.ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, ch, "ADDED", "x")

	cm.Labels["tier"] = "db"
	cm, err = cms.Update(e.ctx, cm, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev := expectEvent(t, ch, "DELETED", "x")
	if m := ev.meta(t); m.ResourceVersion != cm.ResourceVersion || m.Labels["tier"] != "web" {
		t.Fatalf("stop-matching event carries the previous object at the event's rv: %+v", m)
	}
	cm.Labels["tier"] = "web"
	if cm, err = cms.Update(e.ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, ch, "ADDED", "x")
	cm.Data = map[string]string{"k": "v"}
	if _, err = cms.Update(e.ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, ch, "MODIFIED", "x")
	if err := cms.Delete(e.ctx, "x", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, ch, "DELETED", "x")
}

func TestWatchBookmarksAndInitialEvents(t *testing.T) {
	e := newEnv(t, apiservertest.Options{BookmarkIdle: 50 * time.Millisecond})
	cms := e.cs.CoreV1().ConfigMaps("default")
	for _, n := range []string{"a", "b"} {
		if _, err := cms.Create(e.ctx, configMap(n, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ch, _ := e.rawWatch("/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
	expectEvent(t, ch, "ADDED", "a")
	expectEvent(t, ch, "ADDED", "b")
	ev := next(t, ch)
	m := ev.meta(t)
	if ev.Type != "BOOKMARK" || m.Annotations[metav1.InitialEventsAnnotationKey] != "true" || m.ResourceVersion == "" {
		t.Fatalf("initial-events-end bookmark: %s %s", ev.Type, ev.Object)
	}
	// Idle: periodic bookmarks.
	ev = next(t, ch)
	if ev.Type != "BOOKMARK" || ev.meta(t).Annotations != nil {
		t.Fatalf("idle bookmark: %s %s", ev.Type, ev.Object)
	}
	var obj map[string]any
	if err := json.Unmarshal(ev.Object, &obj); err != nil || obj["kind"] != "ConfigMap" || obj["apiVersion"] != "v1" {
		t.Fatalf("bookmark object %s", ev.Object)
	}
	rv, _ := strconv.Atoi(ev.meta(t).ResourceVersion)
	if rv == 0 {
		t.Fatalf("bookmark rv %s", ev.Object)
	}

	// sendInitialEvents without NotOlderThan is refused.
	e.do("GET", "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true", "", nil).status(t, 422, metav1.StatusReasonInvalid)
}

func TestWatchTimeoutAndTable(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cms := e.cs.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(e.ctx, configMap("a", map[string]string{"k": "v"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ch, _ := e.rawWatch("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1",
		"Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
	ev := next(t, ch)
	var tbl metav1.Table
	if err := json.Unmarshal(ev.Object, &tbl); err != nil || ev.Type != "ADDED" || tbl.Kind != "Table" ||
		len(tbl.Rows) != 1 || len(tbl.ColumnDefinitions) == 0 || tbl.Rows[0].Cells[0] != "a" {
		t.Fatalf("table event: %s %s", ev.Type, ev.Object)
	}
	if _, err := cms.Create(e.ctx, configMap("b", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	if err := json.Unmarshal(ev.Object, &tbl); err != nil || len(tbl.Rows) != 1 || tbl.Rows[0].Cells[0] != "b" {
		t.Fatalf("second table event: %s", ev.Object)
	}
	// timeoutSeconds=1 ends the stream.
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end after timeoutSeconds")
	}
}

func TestInformerSyncsAndFollows(t *testing.T) {
	e := newEnv(t, apiservertest.Options{})
	cms := e.cs.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(e.ctx, configMap("before", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(e.cs, 0, informers.WithNamespace("default"))
	inf := factory.Core().V1().ConfigMaps().Informer()
	stop := make(chan struct{})
	defer close(stop)
	factory.Start(stop)
	if !cache.WaitForCacheSync(stop, inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	if _, ok, _ := inf.GetStore().GetByKey("default/before"); !ok {
		t.Fatal("informer misses the existing object")
	}
	if _, err := cms.Create(e.ctx, configMap("after", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "informer sees the new object", func() bool {
		_, ok, _ := inf.GetStore().GetByKey("default/after")
		return ok
	})
}
