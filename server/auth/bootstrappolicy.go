package auth

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels and annotations of the default roles, as Kubernetes'.
const (
	bootstrapLabel      = "kubernetes.io/bootstrapping"
	bootstrapLabelValue = "rbac-defaults"
	autoupdateAnnot     = "rbac.authorization.kubernetes.io/autoupdate"
)

var (
	readVerbs  = []string{"get", "list", "watch"}
	writeVerbs = []string{"create", "delete", "deletecollection", "patch", "update"}
)

func rule(verbs []string, group string, resources ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, APIGroups: []string{group}, Resources: resources}
}

func urls(verbs []string, u ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, NonResourceURLs: u}
}

func defaultMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Labels: map[string]string{bootstrapLabel: bootstrapLabelValue},
		Annotations: map[string]string{autoupdateAnnot: "true"}}
}

// viewRules: read access to the namespaced objects of an application,
// secrets excepted (Kubernetes' view role).
func viewRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		rule(readVerbs, "", "configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
			"replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services", "services/status",
			"bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
			"replicationcontrollers/status", "resourcequotas", "resourcequotas/status", "namespaces"),
		rule(readVerbs, "apps", "controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
			"deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
			"statefulsets/scale", "statefulsets/status"),
		rule(readVerbs, "autoscaling", "horizontalpodautoscalers", "horizontalpodautoscalers/status"),
		rule(readVerbs, "batch", "cronjobs", "cronjobs/status", "jobs", "jobs/status"),
		rule(readVerbs, "policy", "poddisruptionbudgets", "poddisruptionbudgets/status"),
		rule(readVerbs, "networking.k8s.io", "ingresses", "ingresses/status", "networkpolicies"),
		rule(readVerbs, "discovery.k8s.io", "endpointslices"),
		// metrics-server's system:aggregated-metrics-reader, which
		// aggregates to view, edit and admin.
		rule(readVerbs, "metrics.k8s.io", "pods", "nodes"),
	}
}

// editRules: view, plus secrets, plus changing the objects of an
// application, exec and port-forward (Kubernetes' edit role).
func editRules() []rbacv1.PolicyRule {
	rules := viewRules()
	return append(rules,
		rule(readVerbs, "", "secrets", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "services/proxy"),
		rule([]string{"create"}, "", "pods/attach", "pods/exec", "pods/portforward", "pods/eviction", "serviceaccounts/token"),
		rule(writeVerbs, "", "pods", "pods/attach", "pods/ephemeralcontainers", "pods/exec", "pods/portforward", "pods/proxy", "configmaps", "endpoints",
			"persistentvolumeclaims", "replicationcontrollers", "replicationcontrollers/scale", "secrets",
			"serviceaccounts", "services", "services/proxy"),
		rule(writeVerbs, "apps", "daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
			"replicasets/scale", "statefulsets", "statefulsets/scale"),
		rule(writeVerbs, "autoscaling", "horizontalpodautoscalers"),
		rule(writeVerbs, "batch", "cronjobs", "jobs"),
		rule(writeVerbs, "policy", "poddisruptionbudgets"),
		rule(writeVerbs, "networking.k8s.io", "ingresses", "networkpolicies"),
		rule(writeVerbs, "discovery.k8s.io", "endpointslices"),
	)
}

// DefaultClusterRoles are the cluster roles every cluster starts with
// (Kubernetes' defaults that Skiff serves).
func DefaultClusterRoles() []*rbacv1.ClusterRole {
	admin := append(editRules(),
		rule(append(append([]string{}, readVerbs...), writeVerbs...), "rbac.authorization.k8s.io", "roles", "rolebindings"),
		rule([]string{"create"}, "authorization.k8s.io", "localsubjectaccessreviews"),
	)
	return []*rbacv1.ClusterRole{
		{ObjectMeta: defaultMeta("cluster-admin"), Rules: []rbacv1.PolicyRule{
			rule([]string{"*"}, "*", "*"),
			urls([]string{"*"}, "*"),
		}},
		{ObjectMeta: defaultMeta("admin"), Rules: admin},
		{ObjectMeta: defaultMeta("edit"), Rules: editRules()},
		{ObjectMeta: defaultMeta("view"), Rules: viewRules()},
		{ObjectMeta: defaultMeta("system:basic-user"), Rules: []rbacv1.PolicyRule{
			rule([]string{"create"}, "authentication.k8s.io", "selfsubjectreviews"),
			rule([]string{"create"}, "authorization.k8s.io", "selfsubjectaccessreviews", "selfsubjectrulesreviews"),
		}},
		{ObjectMeta: defaultMeta("system:auth-delegator"), Rules: []rbacv1.PolicyRule{
			rule([]string{"create"}, "authentication.k8s.io", "tokenreviews"),
			rule([]string{"create"}, "authorization.k8s.io", "subjectaccessreviews"),
		}},
		{ObjectMeta: defaultMeta("system:discovery"), Rules: []rbacv1.PolicyRule{
			urls([]string{"get"}, "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"),
		}},
		{ObjectMeta: defaultMeta("system:public-info-viewer"), Rules: []rbacv1.PolicyRule{
			urls([]string{"get"}, "/healthz", "/livez", "/readyz", "/version", "/version/"),
		}},
		// For an external provisioner's service account (not bound by
		// default), as Kubernetes has it.
		{ObjectMeta: defaultMeta("system:persistent-volume-provisioner"), Rules: []rbacv1.PolicyRule{
			rule([]string{"create", "delete", "get", "list", "watch"}, "", "persistentvolumes"),
			rule([]string{"get", "list", "update", "watch"}, "", "persistentvolumeclaims"),
			rule(readVerbs, "storage.k8s.io", "storageclasses"),
			rule([]string{"create", "list", "patch", "update", "watch"}, "", "events"),
			rule([]string{"create", "list", "patch", "update", "watch"}, "events.k8s.io", "events"),
		}},
		// kube-apiserver's system:monitoring (the masters' /metrics and
		// health), plus Skiff's Prometheus query API over the metrics store.
		{ObjectMeta: defaultMeta(RoleMonitoring), Rules: []rbacv1.PolicyRule{
			urls([]string{"get"}, "/healthz", "/healthz/*", "/livez", "/livez/*", "/readyz", "/readyz/*", "/metrics", "/metrics/*",
				"/prometheus/*"),
		}},
		// What the dashboard's overview reads besides the view role: the
		// nodes, their metrics, and the masters' Raft and gossip membership
		// (docs/dashboard.md). Bound by `skiff dashboard` with the chosen role.
		{ObjectMeta: defaultMeta(RoleDashboard), Rules: []rbacv1.PolicyRule{
			rule(readVerbs, "", "nodes"),
			rule(readVerbs, "metrics.k8s.io", "nodes", "pods"),
			urls([]string{"get"}, "/internal/v1/members", "/internal/v1/gossip/members"),
		}},
		{ObjectMeta: defaultMeta("system:service-account-issuer-discovery"), Rules: []rbacv1.PolicyRule{
			urls([]string{"get"}, "/.well-known/openid-configuration", "/.well-known/openid-configuration/", "/openid/v1/jwks", "/openid/v1/jwks/"),
		}},
	}
}

// RoleDashboard is the cluster role with the cluster-wide reads the
// dashboard's overview needs (nodes, node metrics, the masters' membership).
const RoleDashboard = "skiff:dashboard"

// RoleMonitoring is the cluster role, and GroupMonitoring the group bound to
// it, that read the masters' metrics and the Prometheus query API
// (kube-apiserver's system:monitoring).
const (
	RoleMonitoring  = "system:monitoring"
	GroupMonitoring = "system:monitoring"
)

// DefaultClusterRoleBindings bind the default roles as Kubernetes does.
func DefaultClusterRoleBindings() []*rbacv1.ClusterRoleBinding {
	bind := func(role string, groups ...string) *rbacv1.ClusterRoleBinding {
		b := &rbacv1.ClusterRoleBinding{ObjectMeta: defaultMeta(role),
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}}
		for _, g := range groups {
			b.Subjects = append(b.Subjects, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: g})
		}
		return b
	}
	return []*rbacv1.ClusterRoleBinding{
		bind("cluster-admin", GroupMasters),
		bind("system:basic-user", GroupAuthenticated),
		bind("system:discovery", GroupAuthenticated),
		bind("system:public-info-viewer", GroupAuthenticated, GroupUnauthenticated),
		bind("system:service-account-issuer-discovery", GroupServiceAccounts),
		bind(RoleMonitoring, GroupMonitoring),
	}
}
