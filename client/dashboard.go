package client

import (
	"context"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-io/skiff/server/auth"
)

// DashboardAccess is what `skiff dashboard` makes a token for.
type DashboardAccess struct {
	Namespace      string        // of the service account
	ServiceAccount string        // "" = dashboard-<cluster role>
	ClusterRole    string        // bound cluster-wide, with skiff:dashboard
	Expiry         time.Duration // of the token (TokenRequest expirationSeconds)
}

// DashboardLogin is the dashboard's URL on a master and a bearer token.
type DashboardLogin struct {
	URL            string
	Token          string
	ServiceAccount string
	Expires        time.Time
}

// DashboardToken makes (or reuses) a service account bound to the chosen
// ClusterRole and to skiff:dashboard (the overview's reads of nodes, node
// metrics and the masters), and returns a token for it from the
// TokenRequest API with the kubeconfig's master's dashboard URL.
func DashboardToken(ctx context.Context, kubeconfig string, a DashboardAccess) (*DashboardLogin, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if a.ClusterRole == "" {
		return nil, fmt.Errorf("no cluster role")
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, a.ClusterRole, metav1.GetOptions{}); err != nil {
		return nil, fmt.Errorf("cluster role %s: %w", a.ClusterRole, err)
	}
	sa := a.ServiceAccount
	if sa == "" {
		sa = "dashboard-" + strings.NewReplacer(":", "-", ".", "-").Replace(a.ClusterRole)
	}
	_, err = cs.CoreV1().ServiceAccounts(a.Namespace).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: a.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "skiff-dashboard"}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("service account %s/%s: %w", a.Namespace, sa, err)
	}
	for _, role := range []string{a.ClusterRole, auth.RoleDashboard} {
		b := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "skiff-dashboard:" + a.Namespace + ":" + sa + ":" + role,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "skiff-dashboard"}},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: a.Namespace}},
		}
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("cluster role binding %s: %w", b.Name, err)
		}
	}
	secs := int64(a.Expiry / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(a.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for %s/%s: %w", a.Namespace, sa, err)
	}
	return &DashboardLogin{
		URL:            strings.TrimSuffix(cfg.Host, "/") + "/ui/",
		Token:          tr.Status.Token,
		ServiceAccount: a.Namespace + "/" + sa,
		Expires:        tr.Status.ExpirationTimestamp.Time,
	}, nil
}
