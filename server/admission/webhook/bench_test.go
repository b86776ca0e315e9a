package webhook

import (
	"context"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// BenchmarkValidate: the cost the dispatcher adds to a write with no
// webhook configured, and with one validating webhook over loopback TLS.
func BenchmarkValidate(b *testing.B) {
	for _, hooks := range []int{0, 1} {
		name := map[int]string{0: "no-webhook", 1: "one-webhook"}[hooks]
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			if hooks > 0 {
				url, ca := hookServer(b, func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
					return &admissionv1.AdmissionResponse{Allowed: true}
				})
				e.create("validatingwebhookconfigurations", admissionregistrationv1.GroupName, validating("bench", url, ca, admissionregistrationv1.Fail, 5))
			}
			snap, a, ctx := e.snap(), e.attrs("default", nil), context.Background()
			b.ResetTimer()
			for b.Loop() {
				if err := e.d.Validate(ctx, snap, a, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
