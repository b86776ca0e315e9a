package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// TestRBAC: the default cluster roles exist; a service account gets what
// a RoleBinding gives it, in that namespace only, and loses it with the
// binding.
func TestRBAC(t *testing.T) {
	m, kc := kubectlMaster(t)
	ctx := context.Background()
	testutil.WaitFor(t, 30*time.Second, "default cluster roles", func() error {
		out, err := exec.Command("/usr/bin/kubectl", "--kubeconfig", m.Kubeconfig(), "get", "clusterroles", "-o", "name").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, r := range []string{"cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery", "system:public-info-viewer"} {
			if !strings.Contains(string(out), "clusterrole.rbac.authorization.k8s.io/"+r+"\n") {
				return fmt.Errorf("no %s in %s", r, out)
			}
		}
		return nil
	})
	kc("create", "namespace", "team")
	kc("create", "serviceaccount", "robot", "-n", "team")
	tok := kubectlCreateToken(t, m.Kubeconfig(), "robot", "-n", "team")
	robot := tokenClient(t, m, tok)

	// Nothing bound yet: 403 naming the account.
	_, err := robot.CoreV1().Pods("team").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `User "system:serviceaccount:team:robot" cannot list resource "pods"`) {
		t.Fatalf("list before binding: %v", err)
	}
	// Discovery is open to every authenticated user (system:discovery).
	if _, err := robot.Discovery().ServerGroups(); err != nil {
		t.Fatalf("discovery: %v", err)
	}

	kc("create", "rolebinding", "robot-edit", "-n", "team", "--clusterrole", "edit", "--serviceaccount", "team:robot")
	testutil.WaitFor(t, 10*time.Second, "edit takes effect", func() error {
		_, err := robot.CoreV1().ConfigMaps("team").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "made-by-robot"}}, metav1.CreateOptions{})
		return err
	})
	if _, err := robot.CoreV1().Pods("team").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list pods with edit: %v", err)
	}
	// Only in its namespace, and not RBAC itself.
	if _, err := robot.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list pods elsewhere: %v", err)
	}
	if _, err := robot.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list nodes: %v", err)
	}
	if _, err := robot.RbacV1().RoleBindings("team").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list rolebindings with edit: %v", err)
	}

	kc("delete", "rolebinding", "robot-edit", "-n", "team")
	testutil.WaitFor(t, 10*time.Second, "edit revoked", func() error {
		_, err := robot.CoreV1().ConfigMaps("team").List(ctx, metav1.ListOptions{})
		if apierrors.IsForbidden(err) {
			return nil
		}
		return fmt.Errorf("list configmaps after unbinding: %v", err)
	})

	// A namespace admin may hand out what it holds, not more.
	kc("create", "rolebinding", "robot-admin", "-n", "team", "--clusterrole", "admin", "--serviceaccount", "team:robot")
	bind := func(name, role string) error {
		_, err := robot.RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "someone"}}}, metav1.CreateOptions{})
		return err
	}
	testutil.WaitFor(t, 10*time.Second, "admin may bind edit", func() error { return bind("someone-edit", "edit") })
	if err := bind("someone-root", "cluster-admin"); !apierrors.IsForbidden(err) ||
		!strings.Contains(err.Error(), "is attempting to grant RBAC permissions not currently held") {
		t.Fatalf("binding cluster-admin as a namespace admin: %v", err)
	}
	_, err = robot.RbacV1().Roles("team").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "nodes"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"nodes"}}}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("role with rules the admin does not hold: %v", err)
	}
	if _, err := robot.RbacV1().Roles("team").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "cm-reader"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("role within the admin's rights: %v", err)
	}
}
