// Package chaos is Skiff's chaos and correctness harness: real `skiff
// server` processes, on loopback addresses or each in a network namespace
// of its own, under faults (nemeses) while workloads record every client
// operation; checkers then look for linearizability violations, lost
// acknowledged writes, stale reads, watch anomalies and divergent masters.
// docs/chaos.md describes it.
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// Outcome is what a client knows about an operation once it returns.
type Outcome int

const (
	// OK: the server acknowledged it.
	OK Outcome = iota
	// Fail: it certainly did not take effect (409 on a precondition, a
	// refused connection: nothing was sent).
	Fail
	// Unknown: it was sent and may or may not have taken effect (504,
	// 503, a transport error after sending, a client timeout).
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Fail:
		return "fail"
	}
	return "unknown"
}

// Client speaks the Kubernetes API over HTTPS to any master, with the
// admin credentials of the cluster, one HTTP/1.1 connection per request in
// flight (so that one stopped master cannot hold up requests to others).
type Client struct {
	hc      *http.Client
	timeout time.Duration
}

// NewClient builds a client from a master's REST config. timeout bounds
// each request (a client timeout is an Unknown outcome).
func NewClient(cfg *rest.Config, timeout time.Duration) (*Client, error) {
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		TLSClientConfig:     tlsCfg,
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		TLSHandshakeTimeout: 2 * time.Second,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Client{hc: &http.Client{Transport: tr}, timeout: timeout}, nil
}

// Close drops idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Response is one answer.
type Response struct {
	Code    int
	Body    []byte
	Outcome Outcome
	Err     error
}

// Status decodes a metav1.Status body (for errors).
func (r *Response) Status() metav1.Status {
	var st metav1.Status
	_ = json.Unmarshal(r.Body, &st)
	return st
}

func (r *Response) String() string {
	if r.Err != nil {
		return r.Err.Error()
	}
	st := r.Status()
	return fmt.Sprintf("%d %s %s", r.Code, st.Reason, st.Message)
}

// Do sends one request to base (https://IP:6443) and classifies the answer
// for a write: 2xx OK; 404 and 409 Fail; a refused connection Fail; any
// other answer or error Unknown.
func (c *Client) Do(ctx context.Context, method, base, path string, body any) *Response {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return &Response{Outcome: Fail, Err: err}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return &Response{Outcome: Fail, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return &Response{Outcome: transportOutcome(err), Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return &Response{Code: resp.StatusCode, Outcome: Unknown, Err: err}
	}
	r := &Response{Code: resp.StatusCode, Body: b}
	switch {
	case resp.StatusCode/100 == 2:
		r.Outcome = OK
	case resp.StatusCode == http.StatusConflict, resp.StatusCode == http.StatusNotFound,
		resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusUnprocessableEntity:
		r.Outcome = Fail
	default:
		r.Outcome = Unknown
	}
	return r
}

// transportOutcome: a failure to connect sent nothing; any other transport
// error may come after the request was sent.
func transportOutcome(err error) Outcome {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return Fail
	}
	return Unknown
}

func cmPath(ns, name string) string {
	if name == "" {
		return "/api/v1/namespaces/" + ns + "/configmaps"
	}
	return "/api/v1/namespaces/" + ns + "/configmaps/" + name
}

// cmValue reads data["v"] as an integer and the resourceVersion.
func cmValue(b []byte) (int, uint64, error) {
	var cm corev1.ConfigMap
	if err := json.Unmarshal(b, &cm); err != nil {
		return 0, 0, err
	}
	v, err := strconv.Atoi(cm.Data["v"])
	if err != nil {
		return 0, 0, fmt.Errorf("configmap %s: value %q: %w", cm.Name, cm.Data["v"], err)
	}
	rv, err := strconv.ParseUint(cm.ResourceVersion, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("configmap %s: resourceVersion %q: %w", cm.Name, cm.ResourceVersion, err)
	}
	return v, rv, nil
}

func newCM(ns, name string, v int, rv uint64) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string]string{"v": strconv.Itoa(v)},
	}
	if rv != 0 {
		cm.ResourceVersion = strconv.FormatUint(rv, 10)
	}
	return cm
}

// listItem is one object of a list, as the convergence and watch checkers
// compare them.
type listItem struct {
	RV   uint64
	Data string
}

// List lists the ConfigMaps of ns on base; rv "" is a linearizable list,
// "0" the master's local state. It returns the items by name and the
// list's resourceVersion.
func (c *Client) List(ctx context.Context, base, ns, rv string) (map[string]listItem, uint64, error) {
	path := cmPath(ns, "")
	if rv != "" {
		path += "?resourceVersion=" + rv
	}
	r := c.Do(ctx, http.MethodGet, base, path, nil)
	if r.Err != nil || r.Code != http.StatusOK {
		return nil, 0, fmt.Errorf("list on %s: %s", base, r)
	}
	var l corev1.ConfigMapList
	if err := json.Unmarshal(r.Body, &l); err != nil {
		return nil, 0, err
	}
	out := make(map[string]listItem, len(l.Items))
	for _, cm := range l.Items {
		rv, _ := strconv.ParseUint(cm.ResourceVersion, 10, 64)
		out[cm.Name] = listItem{RV: rv, Data: cm.Data["v"]}
	}
	lrv, _ := strconv.ParseUint(l.ResourceVersion, 10, 64)
	return out, lrv, nil
}
