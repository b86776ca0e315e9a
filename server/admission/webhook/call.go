package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"
	webhookerrors "k8s.io/apiserver/pkg/admission/plugin/webhook/errors"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"

	"github.com/skiff-io/skiff/fsm/state"
)

// maxResponseBytes bounds a webhook's answer, as kube-apiserver does (3 MiB
// of object plus its envelope).
const maxResponseBytes = 10 << 20

// errDryRunUnsupported is the refusal of a dry-run request for a webhook
// with side effects.
func errDryRunUnsupported(name string) error {
	return apierrors.NewBadRequest(fmt.Sprintf("admission webhook %q does not support dry run", name))
}

// callMutating calls one mutating webhook and applies its patch; changed
// reports whether the object changed.
func (d *Dispatcher) callMutating(ctx context.Context, snap *state.Snapshot, a *Attributes, h *mutatingHook, warn func(string)) (bool, error) {
	if a.DryRun && !noSideEffects(h.SideEffects) {
		return false, errDryRunUnsupported(h.Name)
	}
	resp, body, err := d.call(ctx, snap, a, h.ClientConfig, h.TimeoutSeconds)
	if err != nil {
		return false, d.failed(h.Name, h.FailurePolicy, err)
	}
	addWarnings(warn, resp.Warnings)
	if !resp.Allowed {
		return false, denied(h.Name, resp.Result)
	}
	if len(resp.Patch) == 0 || a.Object == nil {
		return false, nil
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		return false, d.failed(h.Name, h.FailurePolicy, fmt.Errorf("unsupported patch type %v", resp.PatchType))
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		return false, apierrors.NewInternalError(fmt.Errorf("admission webhook %q returned an invalid patch: %w", h.Name, err))
	}
	patched, err := patch.Apply(body)
	if err != nil {
		return false, apierrors.NewInternalError(fmt.Errorf("admission webhook %q returned a patch that does not apply: %w", h.Name, err))
	}
	if bytes.Equal(patched, body) {
		return false, nil
	}
	obj := a.Kind.NewObject()
	if err := json.Unmarshal(patched, obj); err != nil {
		return false, apierrors.NewInternalError(fmt.Errorf("admission webhook %q returned a patch that does not decode: %w", h.Name, err))
	}
	if obj.GetObjectKind().GroupVersionKind() != a.Kind.GVK {
		return false, apierrors.NewInternalError(fmt.Errorf("admission webhook %q changed the object's kind", h.Name))
	}
	if m, err := meta.Accessor(obj); err != nil || m.GetName() != a.Name || m.GetNamespace() != a.Namespace {
		return false, apierrors.NewInternalError(fmt.Errorf("admission webhook %q changed the object's name or namespace", h.Name))
	}
	// Change the caller's object in place: it holds a pointer to it.
	dst, src := reflect.ValueOf(a.Object), reflect.ValueOf(obj)
	if dst.Kind() != reflect.Pointer || dst.Type() != src.Type() {
		return false, apierrors.NewInternalError(fmt.Errorf("admission webhook %q: cannot patch %T", h.Name, a.Object))
	}
	dst.Elem().Set(src.Elem())
	return true, nil
}

func (d *Dispatcher) callValidating(ctx context.Context, snap *state.Snapshot, a *Attributes, h *admissionregistrationv1.ValidatingWebhook, warn func(string)) error {
	if a.DryRun && !noSideEffects(h.SideEffects) {
		return errDryRunUnsupported(h.Name)
	}
	resp, _, err := d.call(ctx, snap, a, h.ClientConfig, h.TimeoutSeconds)
	if err != nil {
		return d.failed(h.Name, h.FailurePolicy, err)
	}
	addWarnings(warn, resp.Warnings)
	if !resp.Allowed {
		return denied(h.Name, resp.Result)
	}
	return nil
}

func noSideEffects(s *admissionregistrationv1.SideEffectClass) bool {
	return s != nil && (*s == admissionregistrationv1.SideEffectClassNone || *s == admissionregistrationv1.SideEffectClassNoneOnDryRun)
}

func addWarnings(warn func(string), ws []string) {
	if warn == nil {
		return
	}
	for _, w := range ws {
		warn(w)
	}
}

// denied is kube-apiserver's error for a refusal (webhookerrors.ToStatusErr):
// the webhook's status with its message, else its reason, after "admission
// webhook … denied the request: "; its code if 400 or more, else 400.
func denied(name string, result *metav1.Status) error {
	if result != nil {
		result = result.DeepCopy()
	}
	return webhookerrors.ToStatusErr(name, result)
}

// review builds the AdmissionReview v1 for a; body is the object as sent
// (the patch's base).
func review(a *Attributes) (*admissionv1.AdmissionReview, []byte, error) {
	gvk := a.objectGVK()
	gvr := a.Kind.GVK.GroupVersion().WithResource(a.Kind.Resource)
	req := &admissionv1.AdmissionRequest{
		UID:             uuid.NewUUID(),
		Kind:            metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:        metav1.GroupVersionResource{Group: gvr.Group, Version: gvr.Version, Resource: gvr.Resource},
		SubResource:     a.Subresource,
		Name:            a.Name,
		Namespace:       a.Namespace,
		Operation:       admissionv1.Operation(a.Operation),
		DryRun:          &a.DryRun,
		RequestKind:     &metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		RequestResource: &metav1.GroupVersionResource{Group: gvr.Group, Version: gvr.Version, Resource: gvr.Resource},
	}
	if a.Subresource != "" {
		req.RequestSubResource = a.Subresource
	}
	if u := a.User; u != nil {
		req.UserInfo = u.UserInfo()
	}
	var body []byte
	var err error
	if a.Object != nil {
		if body, err = encode(a.Object, gvk); err != nil {
			return nil, nil, err
		}
		req.Object = runtime.RawExtension{Raw: body}
	}
	if a.OldObject != nil {
		old, err := encode(a.OldObject, gvk)
		if err != nil {
			return nil, nil, err
		}
		req.OldObject = runtime.RawExtension{Raw: old}
	}
	if a.Options != nil {
		opts, err := json.Marshal(a.Options)
		if err != nil {
			return nil, nil, err
		}
		req.Options = runtime.RawExtension{Raw: opts}
	}
	return &admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Request:  req,
	}, body, nil
}

// encode is obj as JSON with its apiVersion and kind.
func encode(obj runtime.Object, gvk schema.GroupVersionKind) ([]byte, error) {
	cp := obj.DeepCopyObject()
	cp.GetObjectKind().SetGroupVersionKind(gvk)
	return json.Marshal(cp)
}

// call sends the review to the webhook and returns its response.
func (d *Dispatcher) call(ctx context.Context, snap *state.Snapshot, a *Attributes, cc admissionregistrationv1.WebhookClientConfig, timeoutSeconds *int32) (*admissionv1.AdmissionResponse, []byte, error) {
	rev, body, err := review(a)
	if err != nil {
		return nil, nil, fmt.Errorf("encode AdmissionReview: %w", err)
	}
	data, err := json.Marshal(rev)
	if err != nil {
		return nil, nil, fmt.Errorf("encode AdmissionReview: %w", err)
	}
	timeout := 10 * time.Second
	if timeoutSeconds != nil {
		timeout = time.Duration(*timeoutSeconds) * time.Second
	}
	out, err := d.post(ctx, snap, cc, data, timeout)
	if err != nil {
		return nil, nil, err
	}
	var ans admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &ans); err != nil {
		return nil, nil, fmt.Errorf("decode AdmissionReview: %w", err)
	}
	if ans.Response == nil {
		return nil, nil, errors.New("webhook response was absent")
	}
	if ans.Response.UID != rev.Request.UID {
		return nil, nil, fmt.Errorf("expected response.uid=%q, got %q", rev.Request.UID, ans.Response.UID)
	}
	return ans.Response, body, nil
}

// post sends a JSON review to the webhook of cc (its url, or a ready
// endpoint of its service: a pod's through the pod's kubelet) and returns
// the answer of a 200 response.
func (d *Dispatcher) post(ctx context.Context, snap *state.Snapshot, cc admissionregistrationv1.WebhookClientConfig, data []byte, timeout time.Duration) ([]byte, error) {
	var (
		target     string
		serverName string
		viaKubelet bool
	)
	switch {
	case cc.URL != nil:
		target = *cc.URL
	case cc.Service != nil:
		ep, err := d.serviceEndpoint(snap, cc.Service)
		if err != nil {
			return nil, fmt.Errorf("resolve clientConfig.service: %w", err)
		}
		serverName = ep.serverName
		u := &url.URL{Scheme: "https", Host: net.JoinHostPort(ep.ip, strconv.Itoa(ep.port)), Path: ep.path}
		if ep.node != "" && d.kubelets != nil {
			// Through the pod's kubelet, which verifies the certificate
			// with the caBundle and the service name.
			if u, err = d.kubeletPodURL(snap, ep); err != nil {
				return nil, fmt.Errorf("resolve clientConfig.service: %w", err)
			}
			viaKubelet = true
		}
		target = u.String()
	default:
		return nil, errors.New("clientConfig has neither url nor service")
	}
	// The request names its timeout, as kube-apiserver's REST client does
	// (?timeout=10s): a webhook may stop in time.
	tu, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("webhook URL: %w", err)
	}
	q := tu.Query()
	q.Set("timeout", timeout.String())
	tu.RawQuery = q.Encode()
	target = tu.String()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	var client *http.Client
	if viaKubelet {
		if len(cc.CABundle) == 0 {
			return nil, errors.New("a webhook reached through the kubelet needs clientConfig.caBundle")
		}
		client = &http.Client{Transport: d.kubelets}
		req.Header.Set(podProxyCAHeader, base64.StdEncoding.EncodeToString(cc.CABundle))
		req.Header.Set(podProxyServerNameHeader, serverName)
	} else if client, err = d.clients.get(cc.CABundle, serverName); err != nil {
		return nil, err
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("failed to call webhook: %w", err)
	}
	defer res.Body.Close()
	if viaKubelet && res.StatusCode == http.StatusOK && res.Header.Get(podProxyVerifiedHeader) != "true" {
		return nil, errors.New("the kubelet's pod proxy did not verify the webhook's certificate (an older agent?)")
	}
	out, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("failed to call webhook: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("webhook answered %s: %.200s", res.Status, out)
	}
	return out, nil
}

// clientCache keeps one HTTP client per CA bundle and TLS server name, so
// that connections to a webhook are reused.
type clientCache struct {
	mu      sync.Mutex
	clients map[clientKey]*http.Client
}

type clientKey struct {
	ca         [32]byte
	serverName string
}

func newClientCache() *clientCache { return &clientCache{clients: map[clientKey]*http.Client{}} }

// get returns the client that verifies servers with caBundle (the system
// roots if empty) and, if serverName is set, verifies that name rather
// than the dialed address (a Service's endpoint).
func (c *clientCache) get(caBundle []byte, serverName string) (*http.Client, error) {
	key := clientKey{sha256.Sum256(caBundle), serverName}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[key]; ok {
		return cl, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if len(caBundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caBundle) {
			return nil, errors.New("clientConfig.caBundle holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	cl := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     cfg,
		Proxy:               nil,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}}
	c.clients[key] = cl
	return cl, nil
}

// The pod proxy's verification headers (agent/podproxy.go).
const (
	podProxyCAHeader         = "X-Skiff-Pod-Proxy-Ca"
	podProxyServerNameHeader = "X-Skiff-Pod-Proxy-Server-Name"
	podProxyVerifiedHeader   = "X-Skiff-Pod-Proxy-Verified"
)
