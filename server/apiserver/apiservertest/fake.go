// Package apiservertest has test doubles and a TLS test server for code
// that drives the API server.
package apiservertest

import (
	"net/http"
	"strings"
	"sync"

	"github.com/skiff-io/skiff/server/auth"
)

// FakeAuthenticator accepts every request as User, or, when Token is set,
// only requests with "Authorization: Bearer <Token>". A request with
// "Bearer <AdminToken>" (if set) is a system:masters admin's.
type FakeAuthenticator struct {
	Token      string
	User       auth.User
	AdminToken string
}

// Authenticate implements apiserver.Authenticator.
func (a *FakeAuthenticator) Authenticate(r *http.Request) (*auth.User, error) {
	admin := auth.User{Name: "test-admin", Groups: []string{auth.GroupMasters, auth.GroupAuthenticated}}
	h := r.Header.Get("Authorization")
	if a.AdminToken != "" && h == "Bearer "+a.AdminToken {
		return &admin, nil
	}
	if a.Token != "" {
		if !strings.HasPrefix(h, "Bearer ") || strings.TrimPrefix(h, "Bearer ") != a.Token {
			return nil, auth.ErrUnauthenticated
		}
	}
	u := a.User
	if u.Name == "" {
		u = admin
	}
	return &u, nil
}

// FakeAuthorizer allows everything unless Deny says otherwise, and records
// the attributes it was asked about.
type FakeAuthorizer struct {
	// Deny returns a reason to refuse attrs ("" allows).
	Deny func(u *auth.User, attrs auth.Attributes) string

	mu    sync.Mutex
	calls []auth.Attributes
}

// Authorize implements apiserver.Authorizer.
func (a *FakeAuthorizer) Authorize(u *auth.User, attrs auth.Attributes) (bool, string) {
	a.mu.Lock()
	a.calls = append(a.calls, attrs)
	a.mu.Unlock()
	if a.Deny != nil {
		if reason := a.Deny(u, attrs); reason != "" {
			return false, reason
		}
	}
	return true, ""
}

// Calls returns the attributes authorized so far.
func (a *FakeAuthorizer) Calls() []auth.Attributes {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]auth.Attributes(nil), a.calls...)
}
