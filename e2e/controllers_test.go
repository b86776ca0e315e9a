package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// Controllers (issue 6) on real processes: one master (scheduler and
// controllers on the leader) and hollow nodes.

func ptrTo[T any](v T) *T { return &v }

func ctlNamespace(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func ctlDeployment(ns, name string, replicas int32, surge, unavail int) *appsv1.Deployment {
	s, u := intstr.FromInt(surge), intstr.FromInt(unavail)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "example.com/web:1"}},
					TerminationGracePeriodSeconds: ptrTo(int64(1))},
			},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &s, MaxUnavailable: &u}},
		},
	}
}

// podBounds watches a deployment's pods and records the most live pods
// and, once armed, the fewest ready ones.
type podBounds struct {
	mu       sync.Mutex
	pods     map[types.UID]*corev1.Pod
	maxLive  int
	minReady int
	armed    bool
}

func watchPodBounds(t *testing.T, cs kubernetes.Interface, ns, app string) *podBounds {
	t.Helper()
	b := &podBounds{pods: map[types.UID]*corev1.Pod{}, minReady: 1 << 30}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		rv := ""
		for ctx.Err() == nil {
			w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + app, ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				rv = p.ResourceVersion
				if ev.Type == watch.Bookmark {
					continue
				}
				b.observe(ev.Type, p)
			}
		}
	}()
	return b
}

func (b *podBounds) observe(typ watch.EventType, p *corev1.Pod) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if typ == watch.Deleted {
		delete(b.pods, p.UID)
	} else {
		b.pods[p.UID] = p
	}
	live, ready := 0, 0
	for _, p := range b.pods {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		live++
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	b.maxLive = max(b.maxLive, live)
	if b.armed {
		b.minReady = min(b.minReady, ready)
	}
}

func (b *podBounds) arm() {
	b.mu.Lock()
	b.armed, b.maxLive = true, 0
	b.mu.Unlock()
}

func (b *podBounds) check(t *testing.T, maxLive, minReady int) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.maxLive > maxLive || b.minReady < minReady {
		t.Fatalf("rollout bounds exceeded: up to %d live pods (limit %d), down to %d ready (limit %d)", b.maxLive, maxLive, b.minReady, minReady)
	}
	t.Logf("rollout within bounds: at most %d live pods (limit %d), at least %d ready (limit %d)", b.maxLive, maxLive, b.minReady, minReady)
}

func waitRolledOut(t *testing.T, cs kubernetes.Interface, ns, name string, timeout time.Duration) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	testutil.WaitFor(t, timeout, "deployment "+name+" rolled out", func() error {
		var err error
		if d, err = cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			return err
		}
		st, want := d.Status, *d.Spec.Replicas
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != want || st.Replicas != want || st.AvailableReplicas != want {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	return d
}

func patchImage(t *testing.T, cs kubernetes.Interface, ns, name, image string) {
	t.Helper()
	p := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"main","image":%q}]}}}}`, image)
	if _, err := cs.AppsV1().Deployments(ns).Patch(context.Background(), name, types.StrategicMergePatchType, []byte(p), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// kubectlIfInstalled runs kubectl against m when it is installed.
func kubectlIfInstalled(t *testing.T, m *testutil.Master, args ...string) (string, bool) {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", m.Kubeconfig()}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out), true
}

func TestControllers(t *testing.T) {
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "ctl", Args: []string{"--job-backoff-base", "1s"}})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	h := testutil.NewHollowNodes(t, testutil.HollowOptions{Count: 3, Server: m.URL(), Kubeconfig: m.Kubeconfig()})
	h.Start()
	h.WaitReady(cs, 60*time.Second)
	ctx := context.Background()

	t.Run("group", func(t *testing.T) {
		t.Run("DeploymentRolloutAndUndo", func(t *testing.T) {
			t.Parallel()
			ns := "rollout"
			ctlNamespace(t, cs, ns)
			b := watchPodBounds(t, cs, ns, "web")
			if _, err := cs.AppsV1().Deployments(ns).Create(ctx, ctlDeployment(ns, "web", 8, 2, 1), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			waitRolledOut(t, cs, ns, "web", 60*time.Second)
			b.arm()
			patchImage(t, cs, ns, "web", "example.com/web:2")
			if out, ok := kubectlIfInstalled(t, m, "-n", ns, "rollout", "status", "deploy/web", "--timeout=90s"); ok && !strings.Contains(out, "successfully rolled out") {
				t.Fatalf("rollout status: %s", out)
			}
			waitRolledOut(t, cs, ns, "web", 60*time.Second)
			if _, ok := kubectlIfInstalled(t, m, "-n", ns, "rollout", "undo", "deploy/web"); !ok {
				patchImage(t, cs, ns, "web", "example.com/web:1")
			}
			d := waitRolledOut(t, cs, ns, "web", 60*time.Second)
			if img := d.Spec.Template.Spec.Containers[0].Image; img != "example.com/web:1" || d.Annotations["deployment.kubernetes.io/revision"] != "3" {
				t.Fatalf("after undo: image %s, annotations %v", img, d.Annotations)
			}
			if out, ok := kubectlIfInstalled(t, m, "-n", ns, "rollout", "history", "deploy/web"); ok && !strings.Contains(out, "3 ") {
				t.Fatalf("rollout history: %s", out)
			}
			b.check(t, 8+2, 8-1)
		})
		t.Run("JobBackoff", func(t *testing.T) {
			t.Parallel()
			ns := "jobs"
			ctlNamespace(t, cs, ns)
			j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "flaky"}, Spec: batchv1.JobSpec{BackoffLimit: ptrTo(int32(2)),
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "main", Image: "example.com/job:1", Args: []string{"exit=1"}}}}}}}
			begin := time.Now()
			if _, err := cs.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 60*time.Second, "job failed past its backoff limit", func() error {
				j, err := cs.BatchV1().Jobs(ns).Get(ctx, "flaky", metav1.GetOptions{})
				if err != nil {
					return err
				}
				for _, c := range j.Status.Conditions {
					if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue && c.Reason == "BackoffLimitExceeded" && j.Status.Failed == 3 {
						return nil
					}
				}
				return fmt.Errorf("status %+v", j.Status)
			})
			// Back-off 1 s then 2 s between the three pods.
			if d := time.Since(begin); d < 3*time.Second {
				t.Fatalf("three failures in %v: no back-off", d)
			}
		})
		t.Run("JobPolicies", func(t *testing.T) {
			t.Parallel()
			testJobPolicies(t, m, cs) // jobpolicy_test.go
		})
		t.Run("CronJobFires", func(t *testing.T) {
			t.Parallel()
			ns := "cron"
			ctlNamespace(t, cs, ns)
			cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "tick"}, Spec: batchv1.CronJobSpec{Schedule: "* * * * *",
				JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "main", Image: "example.com/job:1", Args: []string{"exit=0"}}}}}}}}}
			if _, err := cs.BatchV1().CronJobs(ns).Create(ctx, cj, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 80*time.Second, "a job of the cronjob completed", func() error {
				c, err := cs.BatchV1().CronJobs(ns).Get(ctx, "tick", metav1.GetOptions{})
				if err != nil {
					return err
				}
				if c.Status.LastScheduleTime == nil || c.Status.LastSuccessfulTime == nil {
					return fmt.Errorf("status %+v", c.Status)
				}
				return nil
			})
		})
		t.Run("NamespaceDeletion", func(t *testing.T) {
			t.Parallel()
			ns := "doomed"
			ctlNamespace(t, cs, ns)
			if _, err := cs.AppsV1().Deployments(ns).Create(ctx, ctlDeployment(ns, "app", 3, 1, 0), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			waitRolledOut(t, cs, ns, "app", 60*time.Second)
			if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if err == nil && n.Status.Phase != corev1.NamespaceTerminating {
				t.Fatalf("phase %s", n.Status.Phase)
			}
			testutil.WaitFor(t, 60*time.Second, "namespace emptied and deleted", func() error {
				if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("namespace still there (%v)", err)
				}
				return nil
			})
			pods, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			rss, _ := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
			if len(pods.Items)+len(rss.Items) != 0 {
				t.Fatalf("left: %d pods, %d replica sets", len(pods.Items), len(rss.Items))
			}
		})
		t.Run("QuotaRefusesPod", func(t *testing.T) {
			t.Parallel()
			ns := "quota"
			ctlNamespace(t, cs, ns)
			q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "q"}, Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("2")}}}
			if _, err := cs.CoreV1().ResourceQuotas(ns).Create(ctx, q, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			mk := func(name, cpu string) error {
				p := fakePod(name, "", corev1.RestartPolicyAlways)
				p.Namespace = ns
				p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
				_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
				return err
			}
			if err := mk("a", "1"); err != nil {
				t.Fatal(err)
			}
			err := mk("b", "2")
			want := `pods "b" is forbidden: exceeded quota: q, requested: cpu=2, used: cpu=1, limited: cpu=2`
			if !apierrors.IsForbidden(err) || err.Error() != want {
				t.Fatalf("got %v\nwant %s", err, want)
			}
			testutil.WaitFor(t, 30*time.Second, "quota usage", func() error {
				q, _ := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "q", metav1.GetOptions{})
				if q.Status.Used.Cpu().String() != "1" {
					return fmt.Errorf("status %+v", q.Status)
				}
				return nil
			})
		})
		t.Run("CascadingDeletion", func(t *testing.T) {
			t.Parallel()
			ns := "cascade"
			ctlNamespace(t, cs, ns)
			for _, name := range []string{"bg", "fg", "orphan"} {
				if _, err := cs.AppsV1().Deployments(ns).Create(ctx, ctlDeployment(ns, name, 2, 1, 0), metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			for _, name := range []string{"bg", "fg", "orphan"} {
				waitRolledOut(t, cs, ns, name, 60*time.Second)
			}
			for name, p := range map[string]metav1.DeletionPropagation{"bg": metav1.DeletePropagationBackground,
				"fg": metav1.DeletePropagationForeground, "orphan": metav1.DeletePropagationOrphan} {
				if err := cs.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &p}); err != nil {
					t.Fatal(err)
				}
			}
			count := func(app string) (rs, pods int, owned bool) {
				r, _ := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
				p, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
				for _, x := range r.Items {
					owned = owned || len(x.OwnerReferences) > 0
				}
				return len(r.Items), len(p.Items), owned
			}
			testutil.WaitFor(t, 60*time.Second, "cascading deletion in three modes", func() error {
				for _, name := range []string{"bg", "fg", "orphan"} {
					if _, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
						return fmt.Errorf("deployment %s still there", name)
					}
				}
				for _, name := range []string{"bg", "fg"} {
					if rs, pods, _ := count(name); rs+pods != 0 {
						return fmt.Errorf("%s: %d replica sets, %d pods left", name, rs, pods)
					}
				}
				if rs, pods, owned := count("orphan"); rs != 1 || pods != 2 || owned {
					return fmt.Errorf("orphan: %d replica sets (owned %v), %d pods", rs, owned, pods)
				}
				return nil
			})
		})
	})
}

// TestLeaderKilledMidRollout: three masters; the leader (which runs the
// controllers) is killed with SIGKILL in the middle of a rolling update;
// the new leader's controllers finish it, within the surge and
// unavailability bounds throughout.
func TestLeaderKilledMidRollout(t *testing.T) {
	c := testutil.StartCluster(t, 3)
	leader := c.Leader(30 * time.Second)
	var via *testutil.Master
	for _, m := range c.Masters {
		if m != leader {
			via = m
			break
		}
	}
	cfg := c.Masters[0].RESTConfig()
	cfg.Host = via.URL()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := testutil.NewHollowNodes(t, testutil.HollowOptions{Count: 3, Server: via.URL(), Kubeconfig: c.Masters[0].Kubeconfig()})
	h.Start()
	h.WaitReady(cs, 60*time.Second)
	ctx := context.Background()
	ns := "failover"
	ctlNamespace(t, cs, ns)
	d := ctlDeployment(ns, "web", 10, 1, 0)
	d.Spec.MinReadySeconds = 2
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, cs, ns, "web", 90*time.Second)
	b := watchPodBounds(t, cs, ns, "web")
	time.Sleep(500 * time.Millisecond) // the watch has its initial list
	b.arm()
	patchImage(t, cs, ns, "web", "example.com/web:2")
	testutil.WaitFor(t, 60*time.Second, "rollout under way", func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.UpdatedReplicas < 2 || d.Status.UpdatedReplicas >= 8 {
			return fmt.Errorf("updated %d", d.Status.UpdatedReplicas)
		}
		return nil
	})
	t.Logf("killing leader %s mid-rollout", leader.Name)
	leader.Kill()
	newLeader := c.Leader(30 * time.Second)
	t.Logf("new leader %s", newLeader.Name)
	d = waitRolledOut(t, cs, ns, "web", 120*time.Second)
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "example.com/web:2" || d.Annotations["deployment.kubernetes.io/revision"] != "2" {
		t.Fatalf("after failover: %s %v", img, d.Annotations)
	}
	pods, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Spec.Containers[0].Image != "example.com/web:2" {
			t.Fatalf("old pod %s left", p.Name)
		}
	}
	b.check(t, 10+1, 10)
}
