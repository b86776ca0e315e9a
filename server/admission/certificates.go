package admission

import (
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/pki"
)

// certificateRequest sets a new CertificateSigningRequest's requester
// (spec.username, uid, groups) from the authenticated user, as
// kube-apiserver does, and refuses with 403, at once, a request for a
// kubelet signer that the signer would never sign: a subject other than
// exactly CN=system:node:<name>, O=system:nodes (system:masters, a
// master's identity...), SANs the signer does not allow, a node asking
// for another node, or a bootstrap-token user asking for a serving
// certificate.
func certificateRequest(u *auth.User, a *Attributes) error {
	if a.Operation != Create || a.Kind.GVK.Group != certificatesv1.GroupName || a.Kind.Resource != "certificatesigningrequests" {
		return nil
	}
	csr, ok := a.Object.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return nil
	}
	if u == nil {
		u = &auth.User{Name: auth.UserAnonymous, Groups: []string{auth.GroupUnauthenticated}}
	}
	csr.Spec.Username, csr.Spec.UID = u.Name, u.UID
	csr.Spec.Groups = append([]string(nil), u.Groups...)
	csr.Spec.Extra = nil
	for k, v := range u.Extra {
		if csr.Spec.Extra == nil {
			csr.Spec.Extra = map[string]certificatesv1.ExtraValue{}
		}
		csr.Spec.Extra[k] = append(certificatesv1.ExtraValue(nil), v...)
	}
	signer := csr.Spec.SignerName
	gr := a.Kind.GroupResource()
	if u.InGroup(auth.GroupBootstrappers) && signer != pki.SignerKubeletClient {
		return apierrors.NewForbidden(gr, a.Name, fmt.Errorf("a bootstrap token may request a node client certificate only (signer %s)", pki.SignerKubeletClient))
	}
	if signer != pki.SignerKubeletClient && signer != pki.SignerKubeletServing {
		return nil
	}
	node, _, err := pki.CheckNodeCSR(signer, csr.Spec.Request)
	if err != nil {
		return apierrors.NewForbidden(gr, a.Name, err)
	}
	if n, isNode := strings.CutPrefix(u.Name, auth.NodeUserPrefix); isNode && u.InGroup(auth.GroupNodes) && n != node {
		return apierrors.NewForbidden(gr, a.Name, fmt.Errorf("%s may request certificates for itself only, not for node %q", u.Name, node))
	}
	return nil
}
