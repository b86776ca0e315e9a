package apiserver

import (
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/skiff-io/skiff/server/auth"
)

// impersonated returns the user u acts as through the Impersonate-User,
// -Group, -Uid and -Extra-* headers (kubectl --as, --as-group), as
// kube-apiserver's impersonation filter: u must be allowed the
// "impersonate" verb on each (users or serviceaccounts, groups, uids,
// userextras), or the request is refused with 403. Without the headers it
// returns u. The extras (keys lower-cased and unescaped, as
// kube-apiserver's) become the user's extra.
func (s *APIServer) impersonated(r *http.Request, u *auth.User) (*auth.User, error) {
	h := r.Header
	name := h.Get(authenticationv1.ImpersonateUserHeader)
	groups := h.Values(authenticationv1.ImpersonateGroupHeader)
	uid := h.Get(authenticationv1.ImpersonateUIDHeader)
	var extras [][2]string
	for k, vs := range h {
		key, ok := strings.CutPrefix(k, textproto.CanonicalMIMEHeaderKey(authenticationv1.ImpersonateUserExtraHeaderPrefix))
		if !ok {
			continue
		}
		key = strings.ToLower(key)
		if k, err := url.PathUnescape(key); err == nil {
			key = k
		}
		for _, v := range vs {
			extras = append(extras, [2]string{key, v})
		}
	}
	if name == "" {
		if len(groups) > 0 || uid != "" || len(extras) > 0 {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("requested impersonation of groups %v, uid %q or extras without impersonating a user", groups, uid))
		}
		return u, nil
	}
	check := func(group, resource, subresource, namespace, target string) error {
		attrs := auth.Attributes{Verb: "impersonate", Group: group, Resource: resource, Subresource: subresource, Namespace: namespace, Name: target}
		if ok, _ := s.authz.Authorize(u, attrs); ok {
			return nil
		}
		res := resource
		if subresource != "" {
			res += "/" + subresource
		}
		scope := "at the cluster scope"
		if namespace != "" {
			scope = fmt.Sprintf("in the namespace %q", namespace)
		}
		return apierrors.NewForbidden(schema.GroupResource{Group: group, Resource: resource}, target,
			fmt.Errorf("User %q cannot impersonate resource %q in API group %q %s", u.Name, res, group, scope))
	}
	out := &auth.User{Name: name, UID: uid, Groups: slices.Clone(groups)}
	if ns, sa, err := serviceaccount.SplitUsername(name); err == nil {
		if err := check("", "serviceaccounts", "", ns, sa); err != nil {
			return nil, err
		}
		if len(groups) == 0 {
			out.Groups = serviceaccount.MakeGroupNames(ns)
		}
	} else if err := check("", "users", "", "", name); err != nil {
		return nil, err
	}
	var errs []error
	for _, g := range groups {
		errs = append(errs, check("", "groups", "", "", g))
	}
	if uid != "" {
		errs = append(errs, check(authenticationv1.GroupName, "uids", "", "", uid))
	}
	for _, e := range extras {
		errs = append(errs, check(authenticationv1.GroupName, "userextras", e[0], "", e[1]))
		if out.Extra == nil {
			out.Extra = map[string][]string{}
		}
		out.Extra[e[0]] = append(out.Extra[e[0]], e[1])
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	// The implicit groups, as kube-apiserver adds them.
	switch {
	case name == user.Anonymous && !out.InGroup(user.AllUnauthenticated):
		out.Groups = append(out.Groups, user.AllUnauthenticated)
	case name != user.Anonymous && !out.InGroup(user.AllAuthenticated) && !out.InGroup(user.AllUnauthenticated):
		out.Groups = append(out.Groups, user.AllAuthenticated)
	}
	audit.LogImpersonatedUser(r.Context(), out.Info(), "")
	return out, nil
}
