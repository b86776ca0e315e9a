package apiserver

import (
	"k8s.io/apimachinery/pkg/runtime"
)

// namedObject is a typed object with the metadata a PUT body is checked by.
type namedObject interface {
	runtime.Object
	GetName() string
	GetResourceVersion() string
}

// putBody is the decoded body of a PUT to a subresource that takes a
// whole object (namespaces/finalize, certificatesigningrequests/approval).
type putBody[T namedObject] struct {
	obj T
	dry bool   // ?dryRun=All
	rv  uint64 // the client's resourceVersion precondition, 0 for none
}

// decodePutBody reads and decodes req's body as a T, named what in the
// error for another type. The object's name must be empty or the URL's.
// The decoder's warnings are added to the response.
func decodePutBody[T namedObject](s *APIServer, req *request, what string) (putBody[T], error) {
	var b putBody[T]
	body, err := s.readBody(req.r)
	if err != nil {
		return b, err
	}
	obj, warnings, err := s.decode.decodeObject(req.r, body, req.kind)
	if err != nil {
		return b, err
	}
	in, ok := obj.(T)
	if !ok {
		return b, badRequest("the body must be a %s", what)
	}
	if n := in.GetName(); n != "" && n != req.info.Name {
		return b, badRequest("the name of the object (%s) does not match the name on the URL (%s)", n, req.info.Name)
	}
	if b.dry, err = dryRun(req.r); err != nil {
		return b, err
	}
	if b.rv, err = parseRV(in.GetResourceVersion()); err != nil {
		return b, err
	}
	addWarnings(req.w, warnings)
	b.obj = in
	return b, nil
}
