// Package controllertest runs controllers against a real, in-process
// Skiff API server (apiservertest) with a FakeKubelet standing in for the
// scheduler and the nodes: the controllers see the API's real semantics
// (resourceVersions, finalizers, graceful deletion, admission).
package controllertest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
	"github.com/skiff-io/skiff/server/controller"
)

// Env is one test's API server, clients and controller context.
type Env struct {
	T      testing.TB
	Ctx    context.Context
	API    *apiservertest.Server
	Client *kubernetes.Clientset
	CC     *controller.Context
	cancel context.CancelFunc
	// admission: the API runs the admission chain.
	admission bool
}

// Options tune NewEnv.
type Options struct {
	// Admission enables the admission chain.
	Admission bool
}

// NewEnv starts an API server with the "default" namespace and builds a
// controller context; everything stops in t.Cleanup.
func NewEnv(t testing.TB, o Options) *Env {
	t.Helper()
	api := apiservertest.NewServer(t, apiservertest.Options{Admission: o.Admission})
	cfg := api.RESTConfig()
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("SKIFF_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	cc, err := controller.NewContext(cs, meta, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	e := &Env{T: t, Ctx: ctx, API: api, Client: cs, CC: cc, cancel: cancel, admission: o.Admission}
	t.Cleanup(func() {
		cancel()
		cc.Informers.Shutdown()
		cc.Events.Shutdown()
	})
	e.Namespace("default")
	return e
}

// Namespace creates a namespace and, with admission (which refuses pods
// whose service account does not exist), its "default" service account,
// as the service account controller would.
func (e *Env) Namespace(name string) {
	e.T.Helper()
	_, err := e.Client.CoreV1().Namespaces().Create(e.Ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		e.T.Fatalf("namespace %s: %v", name, err)
	}
	if !e.admission {
		return
	}
	_, err = e.Client.CoreV1().ServiceAccounts(name).Create(e.Ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil {
		e.T.Fatalf("service account %s/default: %v", name, err)
	}
}

// Start starts the shared informers and runs each function in its own
// goroutine until the test ends.
func (e *Env) Start(runs ...func(ctx context.Context)) {
	e.CC.Informers.Start(e.Ctx.Done())
	for _, r := range runs {
		go r(e.Ctx)
	}
}

// WaitFor polls cond every 20 ms until it returns nil, failing the test
// after timeout with cond's last error.
func (e *Env) WaitFor(timeout time.Duration, what string, cond func() error) {
	e.T.Helper()
	if err := Poll(timeout, cond); err != nil {
		e.T.Fatalf("waiting for %s: %v", what, err)
	}
}

// Poll calls cond every 20 ms until it returns nil or timeout passes.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Errorf is fmt.Errorf, for conditions.
var Errorf = fmt.Errorf
