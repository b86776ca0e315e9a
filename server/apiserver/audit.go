package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"sigs.k8s.io/yaml"

	"github.com/skiff-io/skiff/server/auth"
)

// The audit log, as kube-apiserver's audit filters make it: every request
// gets an audit ID (the client's Audit-ID header, or a new UUID) echoed in
// the Audit-Id response header; once the user is known (or authentication
// failed) the policy (Config.AuditPolicy) picks its level and omitted
// stages, and the event goes to Config.AuditSink at RequestReceived,
// ResponseStarted (watches and streams), ResponseComplete or Panic. The
// events are k8s.io/apiserver's own, so the JSON is upstream's.

// Annotations kube-apiserver's authorization filter adds.
const (
	auditDecisionKey = "authorization.k8s.io/decision"
	auditReasonKey   = "authorization.k8s.io/reason"
)

// auditing reports whether the server has an audit log.
func (s *APIServer) auditing() bool { return s.cfg.AuditSink != nil && s.cfg.AuditPolicy != nil }

// auditInit gives r an audit context and ID and echoes the ID in w's
// headers.
func auditInit(w http.ResponseWriter, r *http.Request) *http.Request {
	ctx := audit.WithAuditContext(r.Context())
	id := r.Header.Get(auditinternal.HeaderAuditID)
	if id == "" {
		id = uuid.NewString()
	}
	audit.WithAuditID(ctx, types.UID(id))
	if w.Header().Get(auditinternal.HeaderAuditID) == "" {
		w.Header().Set(auditinternal.HeaderAuditID, id)
	}
	return r.WithContext(ctx)
}

// auditBegin evaluates the policy for the request of u (nil: not
// authenticated), fills the event's metadata and sends RequestReceived.
// It returns the function to call when the request is done (nil if the
// request is not audited) and false if the event could not be stored (the
// request is then refused, as kube-apiserver does).
func (s *APIServer) auditBegin(rw *statusRecorder, r *http.Request, u *auth.User, info *requestInfo) (end func(), ok bool) {
	if !s.auditing() {
		return nil, true
	}
	ctx := r.Context()
	ac := audit.AuditContextFrom(ctx)
	attrs := auditAttributes(u, info)
	rac := s.cfg.AuditPolicy.EvaluatePolicyRule(attrs)
	if err := ac.Init(rac, s.cfg.AuditSink); err != nil {
		s.log.Error("audit context", "err", err)
		return nil, true
	}
	if rac.Level == auditinternal.LevelNone {
		return nil, true
	}
	audit.LogRequestMetadata(ctx, r, rw.start, attrs)
	if !ac.ProcessEventStage(ctx, auditinternal.StageRequestReceived) {
		return nil, false
	}
	long := info.longRunning()
	rw.audit = &auditWriter{ctx: ctx, started: long, body: !long && !ac.GetEventLevel().Less(auditinternal.LevelRequestResponse)}
	// recover works only in the deferred function itself.
	return func() { s.auditEnd(ctx, rw, long, recover()) }, true
}

// auditEnd sends ResponseComplete, or Panic (and panics again) when the
// handler panicked with p.
func (s *APIServer) auditEnd(ctx context.Context, rw *statusRecorder, long bool, p any) {
	ac := audit.AuditContextFrom(ctx)
	if p != nil {
		ac.SetEventResponseStatus(&metav1.Status{
			Code: http.StatusInternalServerError, Status: metav1.StatusFailure,
			Reason: metav1.StatusReasonInternalError, Message: fmt.Sprintf("APIServer panic'd: %v", p),
		})
		ac.ProcessEventStage(ctx, auditinternal.StagePanic)
		panic(p)
	}
	if ac.GetEventResponseStatus() == nil {
		// Nothing was written: the client went away (kube's words).
		ac.SetEventResponseStatus(&metav1.Status{Code: http.StatusOK, Status: metav1.StatusSuccess, Message: "Connection closed early"})
		if long {
			ac.ProcessEventStage(ctx, auditinternal.StageResponseStarted)
		}
	}
	if aw := rw.audit; aw != nil && aw.body && aw.buf.Len() > 0 {
		// A protobuf answer is logged as JSON (wire.go).
		if raw, ok := s.responseJSON(aw.buf.Bytes()); ok {
			ac.LogResponseObject(ac.GetEventResponseStatus(), &runtime.Unknown{Raw: raw, ContentType: runtime.ContentTypeJSON})
		}
	}
	ac.ProcessEventStage(ctx, auditinternal.StageResponseComplete)
}

// auditAttributes are the request's attributes as the policy reads them.
func auditAttributes(u *auth.User, info *requestInfo) authorizer.AttributesRecord {
	a := authorizer.AttributesRecord{
		Verb:            info.Verb,
		Namespace:       info.Namespace,
		APIGroup:        info.Group,
		APIVersion:      info.Version,
		Resource:        info.Resource,
		Subresource:     info.Subresource,
		Name:            info.Name,
		ResourceRequest: info.IsResource,
		Path:            info.Path,
	}
	if u != nil {
		a.User = u.Info()
	}
	return a
}

// auditAuthorized records the authorization decision, as kube-apiserver's
// annotations.
func auditAuthorized(ctx context.Context, allowed bool, reason string) {
	decision := "forbid"
	if allowed {
		decision = "allow"
	}
	audit.AddAuditAnnotations(ctx, auditDecisionKey, decision, auditReasonKey, reason)
}

// auditFailedAuthentication is kube-apiserver's message for a 401: the
// credentials tried.
func auditFailedAuthentication(r *http.Request) {
	ac := audit.AuditContextFrom(r.Context())
	if ac == nil || !ac.Enabled() {
		return
	}
	var methods []string
	if _, _, ok := r.BasicAuth(); ok {
		methods = append(methods, "basic")
	}
	if f := strings.Fields(r.Header.Get("Authorization")); len(f) > 1 && strings.EqualFold(f[0], "bearer") {
		methods = append(methods, "bearer")
	}
	if r.URL.Query().Get("access_token") != "" {
		methods = append(methods, "access_token")
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		methods = append(methods, "x509")
	}
	msg := "Authentication failed, no credentials provided"
	if len(methods) > 0 {
		msg = "Authentication failed, attempted: " + strings.Join(methods, ", ")
	}
	st := ac.GetEventResponseStatus()
	if st == nil {
		st = &metav1.Status{}
	}
	st = st.DeepCopy()
	st.Message = msg
	ac.SetEventResponseStatus(st)
}

// auditStatus records the Status of a failed request.
func auditStatus(r *http.Request, st *metav1.Status) {
	ac := audit.AuditContextFrom(r.Context())
	if ac == nil || !ac.Enabled() {
		return
	}
	ac.SetEventResponseStatus(&metav1.Status{Status: st.Status, Message: st.Message, Reason: st.Reason, Details: st.Details, Code: st.Code})
}

// audit records a decoded request body: its name and namespace in
// objectRef (a create names its object in the body), and the object
// itself at Request level and above, encoded as JSON in its version
// whatever the body's media type was. A request that is not audited
// (level None, no audit log) costs nothing.
func (d *decoder) audit(r *http.Request, obj runtime.Object, gvk schema.GroupVersionKind) {
	ctx := r.Context()
	ac := audit.AuditContextFrom(ctx)
	if !ac.Enabled() || ac.GetEventLevel().Less(auditinternal.LevelMetadata) {
		return
	}
	audit.LogRequestObject(ctx, obj, gvk.GroupVersion(), schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version}, "", d.codecs)
}

// auditRequestBody records a body that is not decoded as an object (a
// patch, DeleteOptions) at Request level and above, as JSON (a YAML body
// is converted; anything else is left out).
func auditRequestBody(r *http.Request, body []byte) {
	if len(body) == 0 {
		return
	}
	ac := audit.AuditContextFrom(r.Context())
	if !ac.Enabled() || ac.GetEventLevel().Less(auditinternal.LevelRequest) {
		return
	}
	if mt, _ := mediaType(r); strings.HasSuffix(mt, "yaml") {
		j, err := yaml.YAMLToJSON(body)
		if err != nil {
			return
		}
		body = j
	}
	if !json.Valid(body) {
		return
	}
	// LogRequestPatch records raw JSON as the request object.
	audit.LogRequestPatch(r.Context(), body)
}

// auditWriter is the audit part of a response: the status code (and,
// for watches and streams, ResponseStarted) when the response starts, and
// the body at RequestResponse level.
type auditWriter struct {
	ctx     context.Context
	started bool // send ResponseStarted
	body    bool // keep the body
	buf     bytes.Buffer
	once    bool
}

func (a *auditWriter) header(code int) {
	if a.once {
		return
	}
	a.once = true
	ac := audit.AuditContextFrom(a.ctx)
	ac.SetEventResponseStatusCode(int32(code))
	if a.started {
		ac.ProcessEventStage(a.ctx, auditinternal.StageResponseStarted)
	}
}

func (a *auditWriter) write(b []byte) {
	if a.body {
		a.buf.Write(b)
	}
}
