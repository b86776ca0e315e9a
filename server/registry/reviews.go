package registry

import (
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// createOnly is the verb list of the review kinds: virtual kinds whose
// POST is answered with the object and its computed status (the API
// server's handler_review.go). As in kube-apiserver they have no list type
// and no table form.
var createOnly = []string{"create"}

// Access reviews (authorization.k8s.io/v1): may a user do something
// (SubjectAccessReview, LocalSubjectAccessReview in one namespace), may I
// (SelfSubjectAccessReview), and what may I do in a namespace
// (SelfSubjectRulesReview; kubectl auth can-i [--list]).
func selfSubjectAccessReviewKind() *Kind {
	return &Kind{
		GVK:       authorizationv1.SchemeGroupVersion.WithKind("SelfSubjectAccessReview"),
		Resource:  "selfsubjectaccessreviews",
		Virtual:   true,
		Verbs:     createOnly,
		newObject: func() runtime.Object { return &authorizationv1.SelfSubjectAccessReview{} },
	}
}

func subjectAccessReviewKind() *Kind {
	return &Kind{
		GVK:       authorizationv1.SchemeGroupVersion.WithKind("SubjectAccessReview"),
		Resource:  "subjectaccessreviews",
		Virtual:   true,
		Verbs:     createOnly,
		newObject: func() runtime.Object { return &authorizationv1.SubjectAccessReview{} },
	}
}

func localSubjectAccessReviewKind() *Kind {
	return &Kind{
		GVK:        authorizationv1.SchemeGroupVersion.WithKind("LocalSubjectAccessReview"),
		Resource:   "localsubjectaccessreviews",
		Namespaced: true,
		Virtual:    true,
		Verbs:      createOnly,
		newObject:  func() runtime.Object { return &authorizationv1.LocalSubjectAccessReview{} },
	}
}

func selfSubjectRulesReviewKind() *Kind {
	return &Kind{
		GVK:       authorizationv1.SchemeGroupVersion.WithKind("SelfSubjectRulesReview"),
		Resource:  "selfsubjectrulesreviews",
		Virtual:   true,
		Verbs:     createOnly,
		newObject: func() runtime.Object { return &authorizationv1.SelfSubjectRulesReview{} },
	}
}

// TokenReview (authentication.k8s.io/v1) authenticates a bearer token for
// a caller such as an extension API server or a webhook;
// SelfSubjectReview answers who the caller is (kubectl auth whoami).
func tokenReviewKind() *Kind {
	return &Kind{
		GVK:       authenticationv1.SchemeGroupVersion.WithKind("TokenReview"),
		Resource:  "tokenreviews",
		Virtual:   true,
		Verbs:     createOnly,
		newObject: func() runtime.Object { return &authenticationv1.TokenReview{} },
	}
}

func selfSubjectReviewKind() *Kind {
	return &Kind{
		GVK:       authenticationv1.SchemeGroupVersion.WithKind("SelfSubjectReview"),
		Resource:  "selfsubjectreviews",
		Virtual:   true,
		Verbs:     createOnly,
		newObject: func() runtime.Object { return &authenticationv1.SelfSubjectReview{} },
	}
}
