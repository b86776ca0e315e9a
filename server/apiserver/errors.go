package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/server/auth"
)

// writeError answers err as a metav1.Status, in protobuf when the client
// prefers it (wire.go), JSON otherwise. Errors that are not API
// statuses become 500 InternalError.
func (s *APIServer) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var st metav1.Status
	if as, ok := err.(apierrors.APIStatus); ok || errors.As(err, &as) {
		st = as.Status()
	} else {
		s.log.Error("internal error", "path", r.URL.Path, "err", err)
		st = apierrors.NewInternalError(err).Status()
	}
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	code := int(st.Code)
	if code == 0 {
		code = http.StatusInternalServerError
	}
	// A 503 that says when to retry (a master not fit to serve) says it
	// in the header too, which client-go acts on by retrying. Not for
	// other codes: a 429 of an eviction blocked by a disruption budget
	// must reach the client (kubectl drain waits and retries itself).
	if d := st.Details; d != nil && d.RetryAfterSeconds > 0 && code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(d.RetryAfterSeconds)))
	}
	auditStatus(r, &st) // audit.go
	if errorWantsProto(r) {
		writeProto(w, code, &st)
		return
	}
	writeJSON(w, code, &st)
}

// writeJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, code int, v any) {
	var (
		b   []byte
		err error
	)
	if m, ok := v.(json.Marshaler); ok {
		// Custom objects and lists (unstructured) encode themselves;
		// encoding/json would validate and compact their output again.
		b, err = m.MarshalJSON()
		b = bytes.TrimRight(b, "\n")
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(apierrors.NewInternalError(err).Status())
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func unauthorized() error { return apierrors.NewUnauthorized("Unauthorized") }

// forbidden builds kube-apiserver's authorization failure.
func forbidden(u *auth.User, info *requestInfo, reason string) error {
	name := ""
	if u != nil {
		name = u.Name
	}
	var msg string
	if !info.IsResource {
		msg = fmt.Sprintf("User %q cannot %s path %q", name, info.Verb, info.Path)
	} else {
		res := info.Resource
		if info.Subresource != "" {
			res += "/" + info.Subresource
		}
		msg = fmt.Sprintf("User %q cannot %s resource %q in API group %q", name, info.Verb, res, info.Group)
		if info.Namespace != "" {
			msg += fmt.Sprintf(" in the namespace %q", info.Namespace)
		} else {
			msg += " at the cluster scope"
		}
	}
	if reason != "" {
		msg += ": " + reason
	}
	gr := schema.GroupResource{Group: info.Group, Resource: info.Resource}
	return apierrors.NewForbidden(gr, info.Name, errors.New(msg))
}

func notFoundPath() error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusNotFound,
		Reason:  metav1.StatusReasonNotFound,
		Message: "the server could not find the requested resource",
		Details: &metav1.StatusDetails{},
	}}
}

func methodNotSupported(req *request) error {
	return apierrors.NewMethodNotSupported(req.kind.GroupResource(), req.info.Verb)
}

// fsmError turns a business error decided by the FSM into its Status.
func fsmError(gr schema.GroupResource, name string, e *fsm.Error) error {
	switch e.Reason {
	case fsm.ReasonAlreadyExists:
		return apierrors.NewAlreadyExists(gr, name)
	case fsm.ReasonConflict:
		return apierrors.NewConflict(gr, name, errors.New(e.Message))
	case fsm.ReasonNotFound:
		return apierrors.NewNotFound(gr, name)
	}
	return apierrors.NewInternalError(e)
}

// storeError turns an error from Store.Apply or Store.Read into a Status:
// no leader → 503, anything else (deadline, lost leadership, unknown
// outcome) → 504 Timeout.
func storeError(err error) error {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return err
	}
	if errors.Is(err, ErrNoLeader) {
		return apierrors.NewServiceUnavailable(err.Error())
	}
	if errors.Is(err, context.Canceled) {
		return apierrors.NewTimeoutError("request was canceled: "+err.Error(), 0)
	}
	return apierrors.NewTimeoutError(fmt.Sprintf("request did not complete within the allowed duration: %v", err), 0)
}

// badRequest is a 400 with msg.
func badRequest(format string, args ...any) error {
	return apierrors.NewBadRequest(fmt.Sprintf(format, args...))
}
