package apiserver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/registry"
)

// handleApproval serves PUT certificatesigningrequests/<name>/approval
// (`kubectl certificate approve|deny`); PATCH of the subresource takes
// handlePatch (and apply handleApply) with update.approval set. As
// kube-apiserver: only the conditions and the metadata change; the caller
// needs, besides update or patch on the subresource, the "approve" verb
// on the request's signer (resource "signers" of certificates.k8s.io,
// named by the signer or "<domain>/*"); Approved and Denied exclude each
// other and, once set, stay.
func (s *APIServer) handleApproval(req *request) {
	b, err := decodePutBody[*certificatesv1.CertificateSigningRequest](s, req, "CertificateSigningRequest")
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	in, dry, clientRV := b.obj, b.dry, b.rv
	in.Name = req.info.Name
	u := &update{
		kind:      req.kind,
		name:      req.info.Name,
		status:    true,
		approval:  true,
		dry:       dry,
		tryUpdate: func(runtime.Object) (runtime.Object, uint64, error) { return in.DeepCopy(), clientRV, nil },
	}
	out, _, err := s.guaranteedUpdate(req.r.Context(), u)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	s.writeObject(req, 200, out)
}

// approved is the successor of the stored request old after an approval
// update to obj, as kube-apiserver's approval strategy makes it: obj's
// metadata and conditions (defaulted, checked), old's spec and
// certificate. The user in ctx must be allowed to approve for the signer.
func (s *APIServer) approved(ctx context.Context, kind *registry.Kind, obj, old runtime.Object) (runtime.Object, error) {
	in, ok := obj.(*certificatesv1.CertificateSigningRequest)
	cur, ok2 := old.(*certificatesv1.CertificateSigningRequest)
	if !ok || !ok2 {
		return nil, apierrors.NewInternalError(fmt.Errorf("approval of a %T", obj))
	}
	u, ok := auth.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewInternalError(errors.New("approval without a user"))
	}
	if err := s.authorizeSigner(u, cur.Spec.SignerName); err != nil {
		return nil, err
	}
	if errs := validateApproval(in.Status.Conditions, cur.Status.Conditions); len(errs) > 0 {
		return nil, apierrors.NewInvalid(kind.GVK.GroupKind(), cur.Name, errs)
	}
	next := cur.DeepCopy()
	next.ResourceVersion = in.ResourceVersion
	next.Labels, next.Annotations = in.Labels, in.Annotations
	now := metav1.NewTime(s.now().UTC().Truncate(1e9))
	next.Status.Conditions = approvalConditions(in.Status.Conditions, cur.Status.Conditions, now)
	return next, nil
}

// authorizeSigner checks the "approve" verb on the signer, by its name or
// its domain's wildcard, as kube-apiserver's CSR approval admission does.
func (s *APIServer) authorizeSigner(u *auth.User, signer string) error {
	names := []string{signer}
	if domain, _, ok := strings.Cut(signer, "/"); ok {
		names = append(names, domain+"/*")
	}
	for _, n := range names {
		if ok, _ := s.authz.Authorize(u, auth.Attributes{Verb: "approve", Group: certificatesv1.GroupName, Resource: "signers", Name: n}); ok {
			return nil
		}
	}
	return apierrors.NewForbidden(certificatesv1.Resource("signers"), signer,
		fmt.Errorf("user %q not permitted to approve requests with signerName %q", u.Name, signer))
}

// validateApproval checks the new conditions against the old.
func validateApproval(conds, old []certificatesv1.CertificateSigningRequestCondition) field.ErrorList {
	var errs field.ErrorList
	path := field.NewPath("status", "conditions")
	seen := map[certificatesv1.RequestConditionType]bool{}
	for i, c := range conds {
		p := path.Index(i)
		switch c.Type {
		case certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
		case "":
			errs = append(errs, field.Required(p.Child("type"), ""))
			continue
		}
		if seen[c.Type] {
			errs = append(errs, field.Duplicate(p.Child("type"), c.Type))
		}
		seen[c.Type] = true
		if c.Status == "" {
			c.Status = corev1.ConditionTrue
		}
		switch c.Status {
		case corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown:
		default:
			errs = append(errs, field.NotSupported(p.Child("status"), c.Status, []string{"True", "False", "Unknown"}))
		}
	}
	if seen[certificatesv1.CertificateApproved] && seen[certificatesv1.CertificateDenied] {
		errs = append(errs, field.Invalid(path, certificatesv1.CertificateDenied, "Approved and Denied conditions are mutually exclusive"))
	}
	for _, c := range old {
		if (c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied) && !seen[c.Type] {
			errs = append(errs, field.Forbidden(path, fmt.Sprintf("updates may not remove a condition of type %q", c.Type)))
		}
	}
	return errs
}

// approvalConditions are the conditions to store: the client's, defaulted
// (status True, timestamps now), keeping an unchanged condition's times.
func approvalConditions(conds, old []certificatesv1.CertificateSigningRequestCondition, now metav1.Time) []certificatesv1.CertificateSigningRequestCondition {
	prev := map[certificatesv1.RequestConditionType]certificatesv1.CertificateSigningRequestCondition{}
	for _, c := range old {
		prev[c.Type] = c
	}
	out := make([]certificatesv1.CertificateSigningRequestCondition, 0, len(conds))
	for _, c := range conds {
		if c.Status == "" {
			c.Status = corev1.ConditionTrue
		}
		if p, ok := prev[c.Type]; ok && p.Status == c.Status {
			c.LastTransitionTime = p.LastTransitionTime
		}
		if c.LastUpdateTime.IsZero() {
			c.LastUpdateTime = now
		}
		if c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = now
		}
		out = append(out, c)
	}
	return out
}
