package registry

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// CertificateSigningRequests (certificates.k8s.io/v1) are cluster-scoped.
// The requester (spec.username, groups, uid, extra) is set by admission
// from the authenticated user; the spec never changes after create; the
// approval conditions and the certificate are written through /status
// (by the leader's CSR approver and signer).
func certificateSigningRequestKind() *Kind {
	return &Kind{
		GVK:        certificatesv1.SchemeGroupVersion.WithKind("CertificateSigningRequest"),
		Resource:   "certificatesigningrequests",
		ShortNames: []string{"csr"},
		HasStatus:  true,
		// approval: `kubectl certificate approve|deny` (handler_approval.go).
		extraSubresources: []Subresource{{Name: SubApproval, GVK: certificatesv1.SchemeGroupVersion.WithKind("CertificateSigningRequest"),
			Verbs: []string{"get", "patch", "update"}}},
		newObject: func() runtime.Object { return &certificatesv1.CertificateSigningRequest{} },
		newList:   func() runtime.Object { return &certificatesv1.CertificateSigningRequestList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*certificatesv1.CertificateSigningRequest).Status = certificatesv1.CertificateSigningRequestStatus{}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			return validateCSR(obj.(*certificatesv1.CertificateSigningRequest))
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*certificatesv1.CertificateSigningRequest), old.(*certificatesv1.CertificateSigningRequest)
			if !apiequality.Semantic.DeepEqual(n.Spec, o.Spec) {
				return field.ErrorList{field.Forbidden(field.NewPath("spec"), "field is immutable")}
			}
			return nil
		},
		fieldNames: []string{"spec.signerName"},
		fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"spec.signerName": obj.(*certificatesv1.CertificateSigningRequest).Spec.SignerName}
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			ageColumn,
			col("SignerName", "string", "The signer of the request.", 0),
			col("Requestor", "string", "Name of the user who made the request.", 0),
			col("RequestedDuration", "string", "The requested lifetime of the certificate.", 0),
			col("Condition", "string", "Approval and issuance state of the request.", 0),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			c := obj.(*certificatesv1.CertificateSigningRequest)
			d := "<none>"
			if c.Spec.ExpirationSeconds != nil {
				d = (time.Duration(*c.Spec.ExpirationSeconds) * time.Second).String()
			}
			return []any{c.Name, Age(c.CreationTimestamp, now), c.Spec.SignerName, c.Spec.Username, d, csrCondition(c)}
		},
	}
}

// csrCondition is kubectl's CONDITION column: Approved, Denied, Failed,
// Pending, with Issued once a certificate is there.
func csrCondition(c *certificatesv1.CertificateSigningRequest) string {
	var out []string
	for _, cond := range c.Status.Conditions {
		out = append(out, string(cond.Type))
	}
	if len(out) == 0 {
		out = append(out, "Pending")
	}
	if len(c.Status.Certificate) > 0 {
		out = append(out, "Issued")
	}
	return strings.Join(out, ",")
}

func validateCSR(c *certificatesv1.CertificateSigningRequest) field.ErrorList {
	var errs field.ErrorList
	sp := field.NewPath("spec")
	b, _ := pem.Decode(c.Spec.Request)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		errs = append(errs, field.Invalid(sp.Child("request"), "", "must be a PEM CERTIFICATE REQUEST"))
	} else if _, err := x509.ParseCertificateRequest(b.Bytes); err != nil {
		errs = append(errs, field.Invalid(sp.Child("request"), "", err.Error()))
	}
	if c.Spec.SignerName == "" {
		errs = append(errs, field.Required(sp.Child("signerName"), ""))
	} else if !strings.Contains(c.Spec.SignerName, "/") {
		errs = append(errs, field.Invalid(sp.Child("signerName"), c.Spec.SignerName, "must be a fully qualified domain and path of the form 'example.com/signer-name'"))
	}
	if c.Spec.ExpirationSeconds != nil && *c.Spec.ExpirationSeconds < 600 {
		errs = append(errs, field.Invalid(sp.Child("expirationSeconds"), *c.Spec.ExpirationSeconds, "may not specify a duration less than 600 seconds (10 minutes)"))
	}
	if len(c.Spec.Usages) == 0 {
		errs = append(errs, field.Required(sp.Child("usages"), ""))
	}
	return errs
}
