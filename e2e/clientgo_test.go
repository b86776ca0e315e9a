package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// requestLog records the requests a client makes.
type requestLog struct {
	mu   sync.Mutex
	reqs []recordedRequest
}

type recordedRequest struct {
	method, url, contentType string
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.reqs = append(l.reqs, recordedRequest{method: r.Method, url: r.URL.String(), contentType: r.Header.Get("Content-Type")})
		l.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

func (l *requestLog) matching(f func(recordedRequest) bool) []recordedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []recordedRequest
	for _, r := range l.reqs {
		if f(r) {
			out = append(out, r)
		}
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func recordingClient(t *testing.T, m *testutil.Master) (*kubernetes.Clientset, *requestLog) {
	t.Helper()
	cfg := m.RESTConfig()
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	log := &requestLog{}
	cfg.WrapTransport = log.wrap
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, log
}

// TestClientGo drives a real `skiff server` with client-go: typed CRUD
// with protobuf bodies, informers with watch-list on and off, and a watch
// resumed from an expired resourceVersion that relists.
func TestClientGo(t *testing.T) {
	// A small watch ring, so that a resourceVersion expires quickly.
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "clientgo", Args: []string{"--watch-cache-size", "64"}})
	m.Start()
	m.WaitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("TypedCRUDProtobuf", func(t *testing.T) { clientGoCRUD(ctx, t, m) })
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("InformerWatchList=%v", on), func(t *testing.T) { clientGoInformer(ctx, t, m, on) })
	}
	t.Run("ExpiredResourceVersionRelists", func(t *testing.T) { clientGoExpired(ctx, t, m) })
}

func clientGoCRUD(ctx context.Context, t *testing.T, m *testutil.Master) {
	cs, log := recordingClient(t, m)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crud"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deps := cs.AppsV1().Deployments("crud")
	two := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Labels: map[string]string{"app": "api"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &two,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "api"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "busybox:1.36"}}},
			},
		},
	}
	created, err := deps.Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.UID == "" || created.Generation != 1 || created.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Fatalf("created: uid %q generation %d strategy %q", created.UID, created.Generation, created.Spec.Strategy.Type)
	}
	// The Deployment controller may already have written its revision
	// annotation: the read is the same object (UID, generation) at the
	// created resourceVersion or a later one.
	got, err := deps.Get(ctx, "api", metav1.GetOptions{})
	if err != nil || got.UID != created.UID || got.Generation != created.Generation || rvLess(got.ResourceVersion, created.ResourceVersion) {
		t.Fatalf("get: %v %+v", err, got)
	}
	// The Deployment controller may write the object (its revision
	// annotation, its status) between a read and an update: the
	// read-modify-write retries on 409, as client-go callers do.
	var updated *appsv1.Deployment
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := deps.Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.Template.Spec.Containers[0].Image = "busybox:1.37"
		updated, err = deps.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatalf("update: %v", err)
	}
	if updated.Generation != 2 {
		t.Fatalf("update: generation %d, want 2", updated.Generation)
	}
	// A stale update is a 409.
	if _, err := deps.Update(ctx, got, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v", err)
	}
	// The Deployment controller writes the status between a read and an
	// update, so the read-modify-write of the scale retries on 409 as
	// every client-go caller does.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		scale, err := deps.GetScale(ctx, "api", metav1.GetOptions{})
		if err != nil || scale.Spec.Replicas != 2 || scale.Status.Selector != "app=api" {
			t.Fatalf("get scale: %v %+v", err, scale)
		}
		scale.Spec.Replicas = 5
		_, err = deps.UpdateScale(ctx, "api", scale, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatalf("update scale: %v", err)
	}
	list, err := deps.List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
	if err != nil || len(list.Items) != 1 || *list.Items[0].Spec.Replicas != 5 {
		t.Fatalf("list: %v %+v", err, list)
	}
	if err := deps.Delete(ctx, "api", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := deps.Get(ctx, "api", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
	// Every body the typed client sent was protobuf.
	bodies := log.matching(func(r recordedRequest) bool { return r.method == http.MethodPost || r.method == http.MethodPut })
	if len(bodies) < 4 {
		t.Fatalf("recorded %d requests with bodies", len(bodies))
	}
	for _, r := range bodies {
		if r.contentType != runtime.ContentTypeProtobuf {
			t.Fatalf("%s %s sent %q, want protobuf", r.method, r.url, r.contentType)
		}
	}
}

func clientGoInformer(ctx context.Context, t *testing.T, m *testutil.Master, watchList bool) {
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, watchList)
	cs, log := recordingClient(t, m)
	ns := fmt.Sprintf("informer-%v", watchList)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cms := cs.CoreV1().ConfigMaps(ns)
	for i := 0; i < 20; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pre-%d", i)}, Data: map[string]string{"i": fmt.Sprint(i)}}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().ConfigMaps().Informer()
	var updates atomic.Int64
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, newObj any) {
			if cm, ok := newObj.(*corev1.ConfigMap); ok && cm.Data["i"] == "changed" {
				updates.Add(1)
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer func() { close(stop); factory.Shutdown() }()
	factory.Start(stop)
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	if n := countConfigMaps(inf.GetStore().List()); n != 20 {
		t.Fatalf("synced store holds %d ConfigMaps, want 20", n)
	}
	cm, err := cms.Get(ctx, "pre-7", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["i"] = "changed"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the informer's update event", func() error {
		if updates.Load() != 1 {
			return fmt.Errorf("%d update events", updates.Load())
		}
		return nil
	})
	// The informer synced the way the feature gate says.
	configmaps := func(r recordedRequest) bool { return strings.Contains(r.url, "/namespaces/"+ns+"/configmaps?") }
	streams := log.matching(func(r recordedRequest) bool {
		return configmaps(r) && strings.Contains(r.url, "sendInitialEvents=true")
	})
	lists := log.matching(func(r recordedRequest) bool {
		return configmaps(r) && r.method == http.MethodGet && !strings.Contains(r.url, "watch=true")
	})
	if watchList && (len(streams) == 0 || len(lists) != 0) {
		t.Fatalf("watch-list on: %d watch-list requests, %d plain lists; want a watch-list and no list", len(streams), len(lists))
	}
	if !watchList && (len(streams) != 0 || len(lists) == 0) {
		t.Fatalf("watch-list off: %d watch-list requests, %d plain lists; want a list", len(streams), len(lists))
	}
}

// countConfigMaps counts the test's ConfigMaps: every namespace also holds
// kube-root-ca.crt, published by the root-CA publisher at any time.
func countConfigMaps(objs []any) int {
	n := 0
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok && cm.Name != "kube-root-ca.crt" {
			n++
		}
	}
	return n
}

func clientGoExpired(ctx context.Context, t *testing.T, m *testutil.Master) {
	cs, _ := recordingClient(t, m)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "expired"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cms := cs.CoreV1().ConfigMaps("expired")
	list, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := list.ResourceVersion
	// More writes than the ring (64) holds push old out of it.
	for i := 0; i < 100; i++ {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: old})
	if err != nil {
		t.Fatal(err)
	}
	ev, ok := <-w.ResultChan()
	w.Stop()
	if !ok || ev.Type != watch.Error {
		t.Fatalf("watch from an expired resourceVersion: %v %+v, want an ERROR event", ok, ev)
	}
	if st := apierrors.FromObject(ev.Object); !apierrors.IsResourceExpired(st) && !apierrors.IsGone(st) {
		t.Fatalf("ERROR event %v, want 410 Expired", st)
	}

	// A reflector whose watch resumes from the expired resourceVersion (as
	// after a long disconnection) gets 410 and relists: its store gets the
	// 100 objects and keeps following.
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, false)
	var lists atomic.Int64
	var resumed atomic.Bool
	lw := &cache.ListWatch{
		ListFunc: func(opts metav1.ListOptions) (runtime.Object, error) {
			lists.Add(1)
			return cms.List(ctx, opts)
		},
		WatchFunc: func(opts metav1.ListOptions) (watch.Interface, error) {
			if resumed.CompareAndSwap(false, true) {
				opts.ResourceVersion = old
			}
			return cms.Watch(ctx, opts)
		},
	}
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	r := cache.NewReflectorWithOptions(lw, &corev1.ConfigMap{}, store, cache.ReflectorOptions{Name: "expired"})
	stop := make(chan struct{})
	defer close(stop)
	go r.Run(stop)
	testutil.WaitFor(t, 30*time.Second, "a relist after 410", func() error {
		if n := lists.Load(); n < 2 {
			return fmt.Errorf("%d lists", n)
		}
		if n := countConfigMaps(store.List()); n != 100 {
			return fmt.Errorf("%d objects", n)
		}
		return nil
	})
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the event after the relist", func() error {
		if _, ok, _ := store.GetByKey("expired/after"); !ok {
			return fmt.Errorf("not in the store")
		}
		return nil
	})
}

// rvLess reports whether resourceVersion a is older than b. Skiff's
// resourceVersions are Raft indexes, decimal integers.
func rvLess(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA != nil || errB != nil || x < y
}
