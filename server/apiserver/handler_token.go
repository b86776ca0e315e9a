package apiserver

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/auth"
)

// TokenIssuer signs bound service-account tokens (auth.ServiceAccountTokens).
type TokenIssuer interface {
	Issue(spec auth.TokenSpec, now time.Time) (token string, expiry time.Time, err error)
	APIAudiences() []string
	MaxExpiration() time.Duration
}

// handleTokenRequest serves POST serviceaccounts/<name>/token
// (authentication.k8s.io/v1 TokenRequest) as kube-apiserver does: the
// lifetime is at least 10 minutes and at most the issuer's bound, the
// audiences default to the API audiences, and a boundObjectRef to a Pod,
// Secret or Node must name an existing object (same UID; a pod must run as
// this service account). Nothing is stored: the token is signed and returned.
// A node (system:node:<name>) may only ask tokens bound to a pod on it.
func (s *APIServer) handleTokenRequest(req *request) {
	issuer := s.cfg.ServiceAccountTokens
	if issuer == nil {
		s.writeError(req.w, req.r, apierrors.NewServiceUnavailable("service account token signing is not configured on this server"))
		return
	}
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	obj, _, err := s.decode.decodeBody(req.r, body, authenticationv1.SchemeGroupVersion.WithKind("TokenRequest"), &authenticationv1.TokenRequest{})
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	tr := obj.(*authenticationv1.TokenRequest)
	if tr.Name != "" && tr.Name != req.info.Name {
		s.writeError(req.w, req.r, badRequest("the name of the object (%s) does not match the name on the URL (%s)", tr.Name, req.info.Name))
		return
	}
	if tr.Namespace != "" && tr.Namespace != req.namespace() {
		s.writeError(req.w, req.r, badRequest("the namespace of the provided object does not match the namespace sent on the request"))
		return
	}
	gk := schema.GroupKind{Group: authenticationv1.GroupName, Kind: "TokenRequest"}
	if errs := validateTokenRequest(tr); len(errs) > 0 {
		s.writeError(req.w, req.r, apierrors.NewInvalid(gk, req.info.Name, errs))
		return
	}
	snap, err := s.store.Read(req.r.Context(), true, 0)
	if err != nil {
		s.writeError(req.w, req.r, storeError(err))
		return
	}
	_, saObj, err := getObject(snap, req.kind, req.namespace(), req.info.Name)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	sa := saObj.(*corev1.ServiceAccount)
	if sa.DeletionTimestamp != nil {
		s.writeError(req.w, req.r, apierrors.NewNotFound(req.kind.GroupResource(), sa.Name))
		return
	}
	spec := auth.TokenSpec{Namespace: sa.Namespace, ServiceAccount: sa.Name, ServiceAccountUID: sa.UID, Audiences: tr.Spec.Audiences}
	if len(spec.Audiences) == 0 {
		spec.Audiences = issuer.APIAudiences()
	}
	exp := time.Duration(*tr.Spec.ExpirationSeconds) * time.Second
	if limit := issuer.MaxExpiration(); exp > limit {
		exp = limit
	}
	spec.Expiration = exp
	if err := s.bindToken(req, snap, sa, tr.Spec.BoundObjectRef, &spec); err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	token, expiry, err := issuer.Issue(spec, s.now())
	if err != nil {
		s.writeError(req.w, req.r, apierrors.NewInternalError(err))
		return
	}
	out := tr.DeepCopy()
	out.TypeMeta = metav1.TypeMeta{Kind: "TokenRequest", APIVersion: authenticationv1.SchemeGroupVersion.String()}
	out.Name, out.Namespace = sa.Name, sa.Namespace
	out.Spec.Audiences = spec.Audiences
	secs := int64(exp / time.Second)
	out.Spec.ExpirationSeconds = &secs
	out.Status = authenticationv1.TokenRequestStatus{Token: token, ExpirationTimestamp: metav1.NewTime(expiry)}
	writeJSON(req.w, http.StatusCreated, out)
}

// validateTokenRequest defaults and checks a TokenRequest's spec with
// kube-apiserver's rules and messages.
func validateTokenRequest(tr *authenticationv1.TokenRequest) field.ErrorList {
	var errs field.ErrorList
	specPath := field.NewPath("spec")
	if tr.Spec.ExpirationSeconds == nil {
		secs := int64(auth.DefaultTokenExpiration / time.Second)
		tr.Spec.ExpirationSeconds = &secs
	}
	secs := *tr.Spec.ExpirationSeconds
	switch {
	case secs < int64(auth.MinTokenExpiration/time.Second):
		errs = append(errs, field.Invalid(specPath.Child("expirationSeconds"), secs, "may not specify a duration less than 10 minutes"))
	case secs > math.MaxUint32:
		errs = append(errs, field.Invalid(specPath.Child("expirationSeconds"), secs, "may not specify a duration larger than 2^32 seconds"))
	}
	for i, a := range tr.Spec.Audiences {
		if strings.TrimSpace(a) == "" {
			errs = append(errs, field.Invalid(specPath.Child("audiences").Index(i), a, "must not be empty"))
		}
	}
	if ref := tr.Spec.BoundObjectRef; ref != nil {
		p := specPath.Child("boundObjectRef")
		if ref.Kind != "Pod" && ref.Kind != "Secret" && ref.Kind != "Node" {
			errs = append(errs, field.NotSupported(p.Child("kind"), ref.Kind, []string{"Node", "Pod", "Secret"}))
		}
		if ref.APIVersion != "" && ref.APIVersion != "v1" {
			errs = append(errs, field.NotSupported(p.Child("apiVersion"), ref.APIVersion, []string{"v1"}))
		}
		if ref.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		}
	}
	return errs
}

// bindToken checks the bound object and records it (and, for a pod, its
// node) in spec. A node may only ask tokens bound to its own pods.
func (s *APIServer) bindToken(req *request, snap *state.Snapshot, sa *corev1.ServiceAccount, ref *authenticationv1.BoundObjectReference, spec *auth.TokenSpec) error {
	node, isNode := nodeOf(req.user)
	if ref == nil {
		if isNode {
			return apierrors.NewForbidden(req.kind.GroupResource(), sa.Name,
				fmt.Errorf("node %q may only request tokens bound to a pod on it", node))
		}
		return nil
	}
	resource := strings.ToLower(ref.Kind) + "s"
	kind, ok := s.reg.Lookup("", "v1", resource)
	if !ok {
		return apierrors.NewInternalError(fmt.Errorf("no kind for %s", resource))
	}
	ns := sa.Namespace
	if !kind.Namespaced {
		ns = ""
	}
	_, obj, err := getObject(snap, kind, ns, ref.Name)
	if err != nil {
		return err
	}
	conflict := func(uid string) error {
		return apierrors.NewConflict(schema.GroupResource{Resource: ref.Kind}, ref.Name, fmt.Errorf(
			"the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", uid))
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		if ref.UID != "" && ref.UID != o.UID {
			return conflict(string(ref.UID))
		}
		if o.Spec.ServiceAccountName != sa.Name {
			return apierrors.NewBadRequest(fmt.Sprintf("cannot bind token for serviceaccount %q to pod running with different serviceaccount name.", sa.Name))
		}
		if isNode && o.Spec.NodeName != node {
			return apierrors.NewForbidden(req.kind.GroupResource(), sa.Name,
				fmt.Errorf("node %q may only request tokens bound to a pod on it; pod %q is not", node, o.Name))
		}
		spec.Pod = &auth.ObjectRef{Name: o.Name, UID: o.UID}
		if o.Spec.NodeName != "" {
			spec.Node = &auth.ObjectRef{Name: o.Spec.NodeName}
			if nk, ok := s.reg.Lookup("", "v1", "nodes"); ok {
				if no := snap.Get(nk.Key("", o.Spec.NodeName)); no != nil {
					spec.Node.UID = types.UID(no.UID)
				}
			}
		}
	case *corev1.Secret:
		if isNode {
			return apierrors.NewForbidden(req.kind.GroupResource(), sa.Name,
				fmt.Errorf("node %q may only request tokens bound to a pod on it", node))
		}
		if ref.UID != "" && ref.UID != o.UID {
			return conflict(string(ref.UID))
		}
		spec.Secret = &auth.ObjectRef{Name: o.Name, UID: o.UID}
	case *corev1.Node:
		if isNode {
			// As kube-apiserver's NodeRestriction: pods only.
			return apierrors.NewForbidden(req.kind.GroupResource(), sa.Name,
				fmt.Errorf("node %q may only request tokens bound to a pod on it", node))
		}
		if ref.UID != "" && ref.UID != o.UID {
			return conflict(string(ref.UID))
		}
		spec.Node = &auth.ObjectRef{Name: o.Name, UID: o.UID}
	}
	return nil
}

// nodeOf returns the node name of a node user (system:node:<name> in
// system:nodes).
func nodeOf(u *auth.User) (string, bool) {
	if u == nil || !u.InGroup(auth.GroupNodes) {
		return "", false
	}
	n, ok := strings.CutPrefix(u.Name, auth.NodeUserPrefix)
	return n, ok && n != ""
}
