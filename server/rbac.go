package server

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/auth"
)

// Storage resources of the RBAC kinds.
const (
	clusterRolesResource        = rbacv1.GroupName + "/clusterroles"
	clusterRoleBindingsResource = rbacv1.GroupName + "/clusterrolebindings"
	rolesResource               = rbacv1.GroupName + "/roles"
	roleBindingsResource        = rbacv1.GroupName + "/rolebindings"
)

// rbacObjects lets the authorizer read the RBAC objects of the local
// state (as kube-apiserver's RBAC authorizer reads its informer caches).
type rbacObjects struct{ s *Server }

func (o rbacObjects) decode(obj *state.Object, into any) bool {
	if err := json.Unmarshal(obj.Data, into); err != nil {
		o.s.log.Error("undecodable RBAC object", "key", obj.Key, "err", err)
		return false
	}
	return true
}

func (o rbacObjects) ClusterRoleBindings(fn func(*rbacv1.ClusterRoleBinding) bool) {
	o.s.fsm.Read().List(clusterRoleBindingsResource, "", "", func(obj *state.Object) bool {
		var b rbacv1.ClusterRoleBinding
		return !o.decode(obj, &b) || fn(&b)
	})
}

func (o rbacObjects) RoleBindings(namespace string, fn func(*rbacv1.RoleBinding) bool) {
	o.s.fsm.Read().List(roleBindingsResource, namespace, "", func(obj *state.Object) bool {
		var b rbacv1.RoleBinding
		return !o.decode(obj, &b) || fn(&b)
	})
}

func (o rbacObjects) ClusterRole(name string) (*rbacv1.ClusterRole, bool) {
	obj := o.s.fsm.Read().Get(state.Key{Resource: clusterRolesResource, Name: name})
	var r rbacv1.ClusterRole
	return &r, obj != nil && o.decode(obj, &r)
}

func (o rbacObjects) Role(namespace, name string) (*rbacv1.Role, bool) {
	obj := o.s.fsm.Read().Get(state.Key{Resource: rolesResource, Namespace: namespace, Name: name})
	var r rbacv1.Role
	return &r, obj != nil && o.decode(obj, &r)
}

// ensureDefaultRBAC creates Kubernetes' default cluster roles and bindings
// that do not exist (existing ones are left as they are: an operator may
// have changed them).
func (s *Server) ensureDefaultRBAC(ctx context.Context) error {
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	for _, r := range auth.DefaultClusterRoles() {
		r.TypeMeta = metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"}
		if err := s.ensureObject(ctx, state.Key{Resource: clusterRolesResource, Name: r.Name}, &r.ObjectMeta, now, r); err != nil {
			return err
		}
	}
	for _, b := range auth.DefaultClusterRoleBindings() {
		b.TypeMeta = metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"}
		if err := s.ensureObject(ctx, state.Key{Resource: clusterRoleBindingsResource, Name: b.Name}, &b.ObjectMeta, now, b); err != nil {
			return err
		}
	}
	return nil
}

// ensureObject creates obj (whose metadata is meta) at key unless
// something is there.
func (s *Server) ensureObject(ctx context.Context, key state.Key, meta *metav1.ObjectMeta, now metav1.Time, obj any) error {
	_, err := s.createIfAbsent(ctx, key, meta, now, obj)
	return err
}

// createIfAbsent is ensureObject that also reports whether this call
// created the object.
func (s *Server) createIfAbsent(ctx context.Context, key state.Key, meta *metav1.ObjectMeta, now metav1.Time, obj any) (bool, error) {
	if s.fsm.Read().Get(key) != nil {
		return false, nil
	}
	uid := uuid.NewString()
	meta.UID, meta.CreationTimestamp = types.UID(uid), now
	data, err := json.Marshal(obj)
	if err != nil {
		return false, err
	}
	m := fsm.Mutation{Op: fsm.OpCreate, Key: key, UID: uid, Object: data}
	if err := s.seal(ctx, &m); err != nil {
		return false, err
	}
	entry, err := fsm.EncodeMutation(m)
	if err != nil {
		return false, err
	}
	res, err := s.apply(ctx, entry)
	if err != nil {
		return false, err
	}
	if res.Err != nil {
		if res.Err.Reason != fsm.ReasonAlreadyExists {
			return false, res.Err
		}
		return false, nil
	}
	return true, nil
}
