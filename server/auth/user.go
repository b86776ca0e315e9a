// Package auth authenticates API requests (client certificates signed by the
// cluster CA, bearer tokens) and authorizes them.
package auth

import (
	"context"
	"errors"
	"maps"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apiserver/pkg/authentication/user"
)

// Well-known groups.
const (
	GroupMasters       = "system:masters"       // cluster-admin
	GroupAuthenticated = "system:authenticated" // every authenticated user
	GroupBootstrappers = "system:bootstrappers" // bootstrap-token users
	GroupSkiffServers  = "skiff:servers"        // masters talking to masters (internal endpoints)
	// GroupUnauthenticated holds requests without credentials.
	GroupUnauthenticated = "system:unauthenticated"
)

// Well-known users.
const (
	UserAnonymous = "system:anonymous" // requests without credentials
	UserJoiner    = "skiff:joiner"     // holders of the cluster join token
)

// User is an authenticated identity.
type User struct {
	Name string
	// UID is the service account's UID for service-account users.
	UID    string
	Groups []string
	// Extra is the user's extra information, as Kubernetes' user.Info
	// (for service-account tokens: the bound pod and node and the
	// token's credential-id "JTI=<jti>").
	Extra map[string][]string
}

// Info is u as a k8s.io/apiserver user.Info (a copy).
func (u *User) Info() *user.DefaultInfo {
	return &user.DefaultInfo{Name: u.Name, UID: u.UID, Groups: slices.Clone(u.Groups), Extra: u.cloneExtra()}
}

// UserInfo is u as an authentication.k8s.io/v1 UserInfo (a copy), as
// TokenReviews, SelfSubjectReviews and AdmissionReviews carry it.
func (u *User) UserInfo() authenticationv1.UserInfo {
	out := authenticationv1.UserInfo{Username: u.Name, UID: u.UID, Groups: slices.Clone(u.Groups)}
	if len(u.Extra) > 0 {
		out.Extra = make(map[string]authenticationv1.ExtraValue, len(u.Extra))
		for k, v := range u.Extra {
			out.Extra[k] = slices.Clone(v)
		}
	}
	return out
}

func (u *User) cloneExtra() map[string][]string {
	if len(u.Extra) == 0 {
		return nil
	}
	out := maps.Clone(u.Extra)
	for k, v := range out {
		out[k] = slices.Clone(v)
	}
	return out
}

// InGroup reports whether u belongs to group g.
func (u *User) InGroup(g string) bool {
	if u == nil {
		return false
	}
	for _, x := range u.Groups {
		if x == g {
			return true
		}
	}
	return false
}

// ErrUnauthenticated means the request carried credentials that are not
// valid, or none where some are required. The API answers 401.
var ErrUnauthenticated = errors.New("Unauthorized")

// Attributes describe a request for authorization.
type Attributes struct {
	Verb        string // get, list, watch, create, update, patch, delete, deletecollection
	Group       string
	Resource    string
	Subresource string
	Namespace   string
	Name        string
	// Path is set for non-resource requests (/version, /api, /healthz...).
	Path string
}

type userKey struct{}

// WithUser returns ctx carrying the request's user.
func WithUser(ctx context.Context, u *User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the user WithUser put in ctx.
func UserFrom(ctx context.Context) (*User, bool) {
	u, ok := ctx.Value(userKey{}).(*User)
	return u, ok && u != nil
}
