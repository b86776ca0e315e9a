package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// The web dashboard (server/dashboard, docs/dashboard.md) driven by a
// real headless Chromium through chromedp, on a real one-master cluster
// with its embedded agent (fake runtime).

const chromiumPath = "/usr/bin/chromium"

// newBrowser starts a headless Chromium for the test; it and its
// processes are ended in t.Cleanup.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no %s (Debian package chromium; .ci/deps installs it): the dashboard's browser tests need it", chromiumPath)
	}
	dataDir := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// The test master's certificate is signed by its own CA.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(dataDir),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancelCtx()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	proc := chromedp.FromContext(ctx).Browser.Process()
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc() // kills the browser and waits for it
		if proc != nil {
			_ = proc.Kill() // already gone after cancelAlloc; by PID, only ours
		}
		// Chromium's helpers (zygote, renderers, GPU) carry our
		// --user-data-dir: none may outlive the test.
		err := testutil.Poll(10*time.Second, func() error {
			left := browserProcesses(dataDir)
			for _, pid := range left {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
			if len(left) > 0 {
				return fmt.Errorf("chromium processes %v still running", left)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	return ctx
}

// browserProcesses lists the PIDs of processes started with
// --user-data-dir=dataDir.
func browserProcesses(dataDir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmd), "--user-data-dir="+dataDir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// tab is a new browser tab (its own sessionStorage) with a deadline.
func tab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancel() })
	return ctx
}

// screenshot saves the page as a PNG under the test's temp dir.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir := t.TempDir()
	if d := os.Getenv("SKIFF_SCREENSHOT_DIR"); d != "" { // to keep them
		dir = d
		name = strings.ReplaceAll(t.Name(), "/", "_") + "-" + name
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", p, len(png))
}

// run runs browser actions and fails the test with a screenshot when
// they fail.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		screenshot(t, ctx, "failed")
		body, _ := evaluate[string](ctx, "document.body.innerText")
		t.Fatalf("%s: %v\npage text: %s", what, err, body)
	}
}

// navigate is chromedp.Navigate that loads the page again when Chromium
// gives up with ERR_NETWORK_CHANGED: it aborts a load when an address or
// link of its network namespace changes, and the real nodes of this and
// other tests add veths and bridges to the host's while a page loads.
func navigate(url string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		var err error
		for attempt := 0; attempt < 10; attempt++ {
			if _, err = chromedp.Navigate(url)(ctx, t); err == nil || !strings.Contains(err.Error(), "ERR_NETWORK_CHANGED") {
				return chromedp.Void{}, err
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, ctx.Err()
			case <-time.After(200 * time.Millisecond): // let the change settle
			}
		}
		return chromedp.Void{}, err
	}
}

// fakeNodeMaster starts a master named name with its agent on the fake
// runtime and waits until the node is Ready.
func fakeNodeMaster(t *testing.T, name string) (*testutil.Master, kubernetes.Interface) {
	t.Helper()
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: name, Agent: true, Args: []string{"--runtime", "fake"}})
	m.Start()
	m.WaitReady(60 * time.Second)
	cs := m.Clientset()
	waitNodeReady(t, cs, m.Name)
	return m, cs
}

// login opens the dashboard at path and logs in with token.
func login(t *testing.T, ctx context.Context, base, path, token string) {
	t.Helper()
	run(t, ctx, "log in",
		navigate(base+path),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SetValue(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#main")),
	)
}

// waitText polls until the element's text contains every want.
func waitText(t *testing.T, ctx context.Context, sel string, want ...string) string {
	t.Helper()
	var text string
	err := testutil.Poll(30*time.Second, func() error {
		var err error
		if text, err = evaluate[string](ctx, "(document.querySelector("+strconv.Quote(sel)+") || {}).textContent || ''"); err != nil {
			return err
		}
		for _, w := range want {
			if !strings.Contains(text, w) {
				return fmt.Errorf("%s has %q, no %q", sel, text, w)
			}
		}
		return nil
	})
	if err != nil {
		screenshot(t, ctx, "failed")
		t.Fatal(err)
	}
	return text
}

// evaluate runs a JavaScript expression in the page (2 s at most).
func evaluate[T any](ctx context.Context, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// dashboardToken runs `skiff dashboard` for a cluster role and returns
// the URL and token it printed.
func dashboardToken(t *testing.T, m *testutil.Master, role string) (string, string) {
	t.Helper()
	out, err := exec.Command(testutil.Binary(t), "dashboard", "--kubeconfig", m.Kubeconfig(), "--cluster-role", role, "--expiry", "1h").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("skiff dashboard --cluster-role %s: %v\n%s", role, err, stderr)
	}
	var url, token string
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "url: "); ok {
			url = v
		}
		if v, ok := strings.CutPrefix(l, "token: "); ok {
			token = v
		}
	}
	if url == "" || token == "" {
		t.Fatalf("skiff dashboard printed %q", out)
	}
	return url, token
}

func TestDashboard(t *testing.T) {
	// The agent's runtime is fake (containers simulated, the rest real):
	// no veths or mounts come and go under the browser.
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1", Agent: true, Args: []string{"--runtime", "fake"}})
	m.Start()
	m.WaitReady(60 * time.Second)
	cs := m.Clientset()
	waitNodeReady(t, cs, m.Name)
	base := m.URL()
	ctx := context.Background()

	ns := "dash"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	labels := map[string]string{"app": "web"}
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "skiff.local/none:1"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	browser := newBrowser(t)

	t.Run("Headers", func(t *testing.T) {
		// No credentials: the static files are public, with the headers.
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
		for _, p := range []string{"/ui/", "/ui/workloads/deployments/dash/web", "/ui/app.js"} {
			resp, err := hc.Get(base + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s", p, resp.Status)
			}
			for k, want := range map[string]string{
				"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
				"X-Frame-Options":         "DENY",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("GET %s: %s = %q, want %q", p, k, got, want)
				}
			}
			if resp.Header.Get("ETag") == "" {
				t.Errorf("GET %s: no ETag", p)
			}
		}
		// The browser runs the bundle under that CSP: the login form shows.
		tctx := tab(t, browser)
		run(t, tctx, "open", navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#token")))
		screenshot(t, tctx, "login")
	})

	t.Run("WrongToken", func(t *testing.T) {
		tctx := tab(t, browser)
		run(t, tctx, "wrong token",
			navigate(base+"/ui/"),
			chromedp.WaitVisible(chromedp.CSS("#token")),
			chromedp.SetValue(chromedp.CSS("#token"), "not-a-token"),
			chromedp.Click(chromedp.CSS("#login")),
		)
		waitText(t, tctx, "#login-error", "The API refused this token", "401")
		screenshot(t, tctx, "wrong-token")
		stored, err := evaluate[string](tctx, `sessionStorage.getItem("skiff.token") || ""`)
		if err != nil {
			t.Fatal(err)
		}
		if stored != "" {
			t.Fatalf("a refused token was kept: %q", stored)
		}
	})

	t.Run("OverviewAndScale", func(t *testing.T) {
		url, token := dashboardToken(t, m, "edit")
		if url != base+"/ui/" {
			t.Fatalf("skiff dashboard printed URL %q, want %q", url, base+"/ui/")
		}
		tctx := tab(t, browser)
		login(t, tctx, base, "/ui/", token)
		waitText(t, tctx, "#masters-table", m.Name, "leader", "voter", "ready", "(leader)") // (leader): its last contact
		waitText(t, tctx, "#nodes-table", m.Name, "Ready")
		screenshot(t, tctx, "overview")

		// Scale from the detail page; the pods appear without a reload
		// (a marker set on the page survives).
		run(t, tctx, "open the Deployment",
			navigate(base+"/ui/workloads/deployments/dash/web"),
			chromedp.WaitVisible(chromedp.CSS(`[data-action="scale"]`)),
		)
		if _, err := evaluate[int](tctx, `window.noReload = 1`); err != nil {
			t.Fatal(err)
		}
		waitText(t, tctx, "#related-table", "ReplicaSet", "Pod")
		run(t, tctx, "scale to 3",
			chromedp.SetValue(chromedp.CSS("#replicas"), "3"),
			chromedp.Click(chromedp.CSS(`[data-action="scale"]`)),
		)
		err := testutil.Poll(60*time.Second, func() error {
			pods, err := evaluate[int](tctx, `[...document.querySelectorAll("#related-table tbody tr")].filter(r => r.cells[1].textContent === "Pod").length`)
			if err != nil {
				return err
			}
			if pods != 3 {
				return fmt.Errorf("%d pods listed", pods)
			}
			return nil
		})
		if err != nil {
			screenshot(t, tctx, "failed")
			t.Fatal(err)
		}
		if marker, err := evaluate[int](tctx, `window.noReload || 0`); err != nil || marker != 1 {
			t.Fatal("the page reloaded")
		}
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *d.Spec.Replicas != 3 {
			t.Fatalf("replicas %d after scaling to 3 in the UI", *d.Spec.Replicas)
		}
		screenshot(t, tctx, "scaled")
	})

	t.Run("ViewHidesActions", func(t *testing.T) {
		_, token := dashboardToken(t, m, "view")
		tctx := tab(t, browser)
		login(t, tctx, base, "/ui/workloads/deployments/dash/web", token)
		run(t, tctx, "detail", chromedp.WaitVisible(chromedp.CSS(`#actions[data-decided="true"]`)))
		waitText(t, tctx, "#yaml", "kind: Deployment", "name: web")
		// The overview's masters come through the RBAC-checked read.
		buttons, err := evaluate[int](tctx, `document.querySelectorAll("[data-action]").length`)
		if err != nil {
			t.Fatal(err)
		}
		if buttons != 0 {
			t.Fatalf("a view token sees %d action buttons", buttons)
		}
		screenshot(t, tctx, "view-detail")
		run(t, tctx, "overview", navigate(base+"/ui/"))
		waitText(t, tctx, "#masters-table", m.Name, "leader")

		// Its direct attempts are refused by the API.
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
		for _, req := range []struct{ method, path, body, ctype string }{
			{"PATCH", "/apis/apps/v1/namespaces/dash/deployments/web", `{"spec":{"replicas":0}}`, "application/merge-patch+json"},
			{"DELETE", "/apis/apps/v1/namespaces/dash/deployments/web", "", ""},
			{"DELETE", "/internal/v1/members/m1", "", ""},
		} {
			r, err := http.NewRequest(req.method, base+req.path, strings.NewReader(req.body))
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Authorization", "Bearer "+token)
			if req.ctype != "" {
				r.Header.Set("Content-Type", req.ctype)
			}
			resp, err := hc.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s with a view token: %s, want 403", req.method, req.path, resp.Status)
			}
		}
	})

	t.Run("RestartRollbackCordonDrain", func(t *testing.T) {
		_, token := dashboardToken(t, m, "cluster-admin")
		tctx := tab(t, browser)
		login(t, tctx, base, "/ui/workloads/deployments/dash/web", token)
		run(t, tctx, "actions", chromedp.WaitVisible(chromedp.CSS(`[data-action="restart"]`)))
		run(t, tctx, "restart", chromedp.Click(chromedp.CSS(`[data-action="restart"]`)))
		var firstImage string
		testutil.WaitFor(t, 30*time.Second, "the restartedAt annotation", func() error {
			d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			firstImage = d.Spec.Template.Spec.Containers[0].Image
			if d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
				return fmt.Errorf("template annotations %v", d.Spec.Template.Annotations)
			}
			return nil
		})
		// A new revision with another image; Roll back returns to the
		// previous template (the restart's).
		testutil.WaitFor(t, 30*time.Second, "revision 3", func() error {
			d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if d.Spec.Template.Spec.Containers[0].Image != "skiff.local/other:2" {
				d.Spec.Template.Spec.Containers[0].Image = "skiff.local/other:2"
				if _, err := cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
					return err
				}
			}
			if d.Annotations["deployment.kubernetes.io/revision"] != "3" {
				return fmt.Errorf("revision %q", d.Annotations["deployment.kubernetes.io/revision"])
			}
			return nil
		})
		waitText(t, tctx, "#yaml", "skiff.local/other:2")
		run(t, tctx, "roll back", chromedp.Click(chromedp.CSS(`[data-action="rollback"]`)))
		waitText(t, tctx, "#action-status", "Rolled back")
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != firstImage || d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
			t.Fatalf("after roll back: image %s, annotations %v; want %s with restartedAt", img, d.Spec.Template.Annotations, firstImage)
		}
		screenshot(t, tctx, "rolled-back")

		// Cordon, then drain: the node is unschedulable and its pods are
		// evicted (the ReplicaSet's replacements stay Pending).
		before, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(before.Items) == 0 {
			t.Fatalf("pods before the drain: %v, %v", before, err)
		}
		run(t, tctx, "node", navigate(base+"/ui/nodes/"+m.Name), chromedp.WaitVisible(chromedp.CSS(`[data-action="cordon"]`)))
		run(t, tctx, "cordon", chromedp.Click(chromedp.CSS(`[data-action="cordon"]`)))
		run(t, tctx, "uncordon shows", chromedp.WaitVisible(chromedp.CSS(`[data-action="uncordon"]`)))
		if n, err := cs.CoreV1().Nodes().Get(ctx, m.Name, metav1.GetOptions{}); err != nil || !n.Spec.Unschedulable {
			t.Fatalf("node after cordon: %v", err)
		}
		run(t, tctx, "drain", chromedp.Click(chromedp.CSS(`[data-action="drain"]`)))
		waitText(t, tctx, "#action-status", "Drained")
		for _, p := range before.Items {
			testutil.WaitFor(t, 30*time.Second, "pod "+p.Name+" evicted", func() error {
				q, err := cs.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
				if err == nil && q.UID == p.UID && q.DeletionTimestamp == nil {
					return fmt.Errorf("still there")
				}
				return nil
			})
		}
		screenshot(t, tctx, "drained")
		run(t, tctx, "uncordon", chromedp.Click(chromedp.CSS(`[data-action="uncordon"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-action="cordon"]`)))
	})
}
