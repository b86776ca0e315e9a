package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestAccessReviews drives the access and token reviews with the real
// kubectl: `kubectl auth can-i` (SelfSubjectAccessReview, with --as
// impersonation), `can-i --list` (SelfSubjectRulesReview) as a service
// account, SubjectAccessReview and LocalSubjectAccessReview rights and
// validation, and a TokenReview of a service-account token.
func TestAccessReviews(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	m := testutil.NewMaster(t, testutil.MasterOptions{Name: "m1"})
	m.Start()
	m.WaitReady(30 * time.Second)
	ctx := context.Background()
	// run is kubectl with the admin's kubeconfig; it returns the output
	// and the exit code (can-i answers "no" with exit code 1).
	run := func(args ...string) (string, int) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(c, "/usr/bin/kubectl", append([]string{"--kubeconfig", m.Kubeconfig()}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &ee):
			return string(out), ee.ExitCode()
		}
		t.Fatalf("kubectl %v: %v: %s", args, err, out)
		return "", -1
	}
	kc := func(args ...string) string {
		t.Helper()
		out, code := run(args...)
		if code != 0 {
			t.Fatalf("kubectl %v: exit %d: %s", args, code, out)
		}
		return out
	}
	canI := func(args ...string) string {
		t.Helper()
		out, code := run(append([]string{"auth", "can-i"}, args...)...)
		// The answer is the last line (after any warnings).
		lines := strings.Split(strings.TrimSpace(out), "\n")
		ans := strings.TrimSpace(lines[len(lines)-1])
		if (ans == "yes") != (code == 0) || (ans != "yes" && ans != "no") {
			t.Fatalf("kubectl auth can-i %v: exit %d: %s", args, code, out)
		}
		return ans
	}
	testutil.WaitFor(t, 30*time.Second, "default cluster roles", func() error {
		out, _ := run("get", "clusterroles", "-o", "name")
		for _, r := range []string{"system:basic-user", "system:auth-delegator"} {
			if !strings.Contains(out, "clusterrole.rbac.authorization.k8s.io/"+r+"\n") {
				return fmt.Errorf("no %s in %s", r, out)
			}
		}
		return nil
	})

	// The admin (system:masters) may do anything.
	if got := canI("create", "deployments"); got != "yes" {
		t.Fatalf("admin can-i create deployments: %s", got)
	}
	if got := canI("get", "/healthz"); got != "yes" {
		t.Fatalf("admin can-i get /healthz: %s", got)
	}

	// A service account, impersonated: nothing until a RoleBinding.
	kc("create", "namespace", "team")
	kc("create", "serviceaccount", "robot", "-n", "team")
	const robotUser = "system:serviceaccount:team:robot"
	if got := canI("create", "deployments", "-n", "team", "--as", robotUser); got != "no" {
		t.Fatalf("robot can-i create deployments before binding: %s", got)
	}
	kc("create", "rolebinding", "robot-edit", "-n", "team", "--clusterrole", "edit", "--serviceaccount", "team:robot")
	testutil.WaitFor(t, 10*time.Second, "edit seen by can-i", func() error {
		if got := canI("create", "deployments", "-n", "team", "--as", robotUser); got != "yes" {
			return fmt.Errorf("can-i: %s", got)
		}
		return nil
	})
	// Only in its namespace; --as-group adds a group's rights.
	if got := canI("create", "deployments", "-n", "default", "--as", robotUser); got != "no" {
		t.Fatalf("robot can-i create deployments in default: %s", got)
	}
	if got := canI("list", "nodes", "--as", "someone", "--as-group", "system:masters"); got != "yes" {
		t.Fatalf("can-i as a member of system:masters: %s", got)
	}

	// can-i --list as the service account itself (its own token).
	tok := kubectlCreateToken(t, m.Kubeconfig(), "robot", "-n", "team")
	empty := filepath.Join(t.TempDir(), "empty-kubeconfig")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	asRobot := func(args ...string) (string, error) {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(c, "/usr/bin/kubectl", append([]string{"--kubeconfig", empty, "--server", m.URL(),
			"--certificate-authority", filepath.Join(m.DataDir, "tls", "ca.crt"), "--token", tok}, args...)...).CombinedOutput()
		return string(out), err
	}
	list, err := asRobot("auth", "can-i", "--list", "-n", "team")
	if err != nil {
		t.Fatalf("can-i --list as robot: %v: %s", err, list)
	}
	for _, want := range []string{"deployments.apps", "configmaps", "selfsubjectaccessreviews.authorization.k8s.io", "/api/*"} {
		if !strings.Contains(list, want) {
			t.Errorf("can-i --list as robot: no %q in\n%s", want, list)
		}
	}
	if strings.Contains(list, "rolebindings") {
		t.Errorf("can-i --list as robot lists rolebindings it does not hold:\n%s", list)
	}
	// A user may not impersonate without the right to.
	if out, err := asRobot("auth", "can-i", "list", "pods", "--as", "someone"); err == nil || !strings.Contains(out, "cannot impersonate") {
		t.Errorf("impersonation by the robot: %v: %s", err, out)
	}

	// SubjectAccessReview: the robot may not ask (403); the admin may.
	robot := tokenClient(t, m, tok)
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: robotUser,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "team", Verb: "create", Group: "apps", Resource: "deployments"}}}
	if _, err := robot.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("SubjectAccessReview by the robot: %v, want 403", err)
	}
	admin := m.Clientset()
	got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil || !got.Status.Allowed {
		t.Fatalf("SubjectAccessReview by the admin: %+v, %v", got, err)
	}
	sar.Spec.ResourceAttributes = &authorizationv1.ResourceAttributes{Verb: "list", Resource: "nodes"}
	if got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{}); err != nil || got.Status.Allowed {
		t.Fatalf("SubjectAccessReview list nodes: %+v, %v", got, err)
	}
	// Neither attribute kind: 422 naming the field.
	sar.Spec.ResourceAttributes = nil
	_, err = admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.resourceAttributes") {
		t.Fatalf("SubjectAccessReview without attributes: %v, want 422", err)
	}
	// LocalSubjectAccessReview: the namespace of the URL.
	lsar := &authorizationv1.LocalSubjectAccessReview{ObjectMeta: metav1.ObjectMeta{Namespace: "team"},
		Spec: authorizationv1.SubjectAccessReviewSpec{User: robotUser,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "team", Verb: "get", Resource: "configmaps"}}}
	if got, err := admin.AuthorizationV1().LocalSubjectAccessReviews("team").Create(ctx, lsar, metav1.CreateOptions{}); err != nil || !got.Status.Allowed {
		t.Fatalf("LocalSubjectAccessReview: %+v, %v", got, err)
	}
	lsar.Spec.ResourceAttributes.Namespace = "default"
	if _, err := admin.AuthorizationV1().LocalSubjectAccessReviews("team").Create(ctx, lsar, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("LocalSubjectAccessReview of another namespace: %v, want 422", err)
	}

	// TokenReview authenticates the robot's token.
	tr, err := admin.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tok}}, metav1.CreateOptions{})
	if err != nil || !tr.Status.Authenticated || tr.Status.User.Username != robotUser || len(tr.Status.Audiences) == 0 {
		t.Fatalf("TokenReview of the robot's token: %+v, %v", tr, err)
	}
	tr, err = admin.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tok + "x"}}, metav1.CreateOptions{})
	if err != nil || tr.Status.Authenticated {
		t.Fatalf("TokenReview of a broken token: %+v, %v", tr, err)
	}
	if _, err := robot.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tok}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("TokenReview by the robot: %v, want 403", err)
	}
}

// TestDiscoveryGaps: RuntimeClasses and PodTemplates are stored,
// componentstatuses answer, and kubectl api-resources lists them with the
// reviews.
func TestDiscoveryGaps(t *testing.T) {
	m, kc := kubectlMaster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := kc("api-resources", "--no-headers")
	for _, want := range []string{"runtimeclasses", "podtemplates", "componentstatuses", "selfsubjectaccessreviews", "subjectaccessreviews",
		"localsubjectaccessreviews", "selfsubjectrulesreviews", "tokenreviews", "selfsubjectreviews", "certificatesigningrequests"} {
		if !strings.Contains(res, want+" ") {
			t.Errorf("kubectl api-resources: no %s", want)
		}
	}
	manifest := filepath.Join(t.TempDir(), "objs.yaml")
	if err := os.WriteFile(manifest, []byte(`apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: fast
handler: runc
---
apiVersion: v1
kind: PodTemplate
metadata:
  name: web
  namespace: default
template:
  metadata:
    labels: {app: web}
  spec:
    containers:
    - name: web
      image: nginx
`), 0o600); err != nil {
		t.Fatal(err)
	}
	kc("apply", "-f", manifest)
	out := kc("get", "runtimeclasses,podtemplates,componentstatuses")
	for _, want := range []string{"runtimeclass.node.k8s.io/fast", "runc", "podtemplate/web", "nginx", "app=web", "componentstatus/etcd-0"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get runtimeclasses,podtemplates,componentstatuses: no %q in\n%s", want, out)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "componentstatuses healthy", func() error {
		out, err := kubectl(ctx, m.Kubeconfig(), "get", "componentstatuses")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, name := range []string{"scheduler", "controller-manager", "etcd-0"} {
			if !strings.Contains(out, name) {
				return fmt.Errorf("no %s in\n%s", name, out)
			}
		}
		if strings.Count(out, "Healthy") != 3 || strings.Contains(out, "Unhealthy") {
			return fmt.Errorf("not all healthy:\n%s", out)
		}
		return nil
	})
	if out := kc("get", "cs", "etcd-0", "-o", "jsonpath={.conditions[0].status}"); out != "True" {
		t.Errorf("kubectl get cs etcd-0: %q", out)
	}
}

// TestComponentStatusesHA: with three masters, kubectl get cs through a
// follower lists one healthy etcd-<i> per Raft voter, and one turns
// unhealthy when its master is stopped.
func TestComponentStatusesHA(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed at /usr/bin/kubectl")
	}
	c := testutil.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	via := c.Masters[1]
	testutil.WaitFor(t, 30*time.Second, "three healthy etcd members", func() error {
		out, err := kubectl(ctx, via.Kubeconfig(), "get", "cs", "--no-headers")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if strings.Count(out, "Healthy") != 5 || strings.Contains(out, "Unhealthy") || !strings.Contains(out, "etcd-2") {
			return fmt.Errorf("not all healthy:\n%s", out)
		}
		return nil
	})
	c.Masters[2].Stop()
	testutil.WaitFor(t, 30*time.Second, "a stopped master unhealthy", func() error {
		out, err := kubectl(ctx, via.Kubeconfig(), "get", "cs", "--no-headers")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		unhealthy := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[1] == "Healthy" {
				continue
			}
			if !strings.HasPrefix(f[0], "etcd-") {
				return fmt.Errorf("%s unhealthy:\n%s", f[0], out)
			}
			unhealthy++
		}
		if unhealthy != 1 {
			return fmt.Errorf("want one unhealthy member:\n%s", out)
		}
		return nil
	})
}
