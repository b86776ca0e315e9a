package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// masterEnvTTL is how long the `kubernetes` Service is cached for the
// environment of new containers.
const masterEnvTTL = 30 * time.Second

// masterEnvCache remembers the variables of the `kubernetes` Service.
type masterEnvCache struct {
	mu   sync.Mutex
	at   time.Time
	vars [][2]string
}

// masterServiceEnv returns the variables every container gets for the
// `kubernetes` Service in `default`, as the kubelet sets them (what
// client-go's in-cluster config reads): KUBERNETES_SERVICE_HOST,
// KUBERNETES_SERVICE_PORT(_HTTPS) and the KUBERNETES_PORT* link
// variables. None while the Service cannot be read.
func (a *Agent) masterServiceEnv(ctx context.Context) [][2]string {
	c := &a.masterEnv
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < masterEnvTTL {
		return c.vars
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	svc, err := a.cfg.Client.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		// Asked again 5s later; meanwhile the last known, or none.
		c.at = time.Now().Add(5*time.Second - masterEnvTTL)
		return c.vars
	}
	c.vars, c.at = serviceEnv(svc), time.Now()
	return c.vars
}

// serviceLinkEnv returns the Service variables of a container of pod, as
// the kubelet's getServiceEnvVarMap: those of the master Services in
// `default` always, and, unless spec.enableServiceLinks is false, those
// of every Service with a cluster IP in the pod's namespace (a Service
// there of the same name as a master Service wins). While the namespace's
// Services cannot be listed the container starts with the master's
// variables only (a node that lost its masters keeps restarting pods).
func (a *Agent) serviceLinkEnv(ctx context.Context, pod *corev1.Pod) [][2]string {
	vars := a.masterServiceEnv(ctx)
	if pod.Spec.EnableServiceLinks != nil && !*pod.Spec.EnableServiceLinks {
		return vars
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := a.cfg.Client.CoreV1().Services(pod.Namespace).List(lctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		a.log.Warn("service environment variables: services not listed", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		return vars
	}
	out := vars
	if pod.Namespace != metav1.NamespaceDefault {
		for _, svc := range list.Items {
			if svc.Name == "kubernetes" {
				out = nil // the namespace's own `kubernetes` Service replaces the master's
			}
		}
	} else {
		out = nil // `default` is listed whole, the master Service with it
	}
	out = slices.Clone(out)
	for i := range list.Items {
		out = append(out, serviceEnv(&list.Items[i])...)
	}
	return out
}

// serviceEnv makes the Docker-link-style variables of a Service.
func serviceEnv(svc *corev1.Service) [][2]string {
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
		return [][2]string{}
	}
	name := strings.ToUpper(strings.ReplaceAll(svc.Name, "-", "_"))
	first := svc.Spec.Ports[0]
	vars := [][2]string{
		{name + "_SERVICE_HOST", ip},
		{name + "_SERVICE_PORT", fmt.Sprint(first.Port)},
	}
	for _, p := range svc.Spec.Ports {
		if p.Name != "" {
			vars = append(vars, [2]string{name + "_SERVICE_PORT_" + strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")), fmt.Sprint(p.Port)})
		}
	}
	vars = append(vars, [2]string{name + "_PORT", fmt.Sprintf("%s://%s:%d", strings.ToLower(string(first.Protocol)), ip, first.Port)})
	for _, p := range svc.Spec.Ports {
		proto := strings.ToLower(string(p.Protocol))
		prefix := fmt.Sprintf("%s_PORT_%d_%s", name, p.Port, strings.ToUpper(proto))
		vars = append(vars,
			[2]string{prefix, fmt.Sprintf("%s://%s:%d", proto, ip, p.Port)},
			[2]string{prefix + "_PROTO", proto},
			[2]string{prefix + "_PORT", fmt.Sprint(p.Port)},
			[2]string{prefix + "_ADDR", ip})
	}
	return vars
}
