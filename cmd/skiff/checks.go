package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-io/skiff/server/pki"
)

// masterURL checks a master's URL given to flag (--join, --server): an
// https URL with a host, as https://HOST:PORT. A bare HOST:PORT, the
// common slip, gets a message that says what to write instead.
func masterURL(flag, raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		hint := raw
		if _, _, err := net.SplitHostPort(raw); err != nil {
			hint = net.JoinHostPort(raw, "6443")
		}
		return "", fmt.Errorf("%s %q is not a master's URL: give https://%s", flag, raw, hint)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("%s %q: masters serve only HTTPS: give https://%s", flag, raw, u.Host)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%s %q: give only https://HOST:PORT, with no path, query or user", flag, raw)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "6443")
	}
	return "https://" + host, nil
}

// requireRoot stops a process that runs containers (the kubelet with
// libcontainer) when it is not root: it would start and then fail on
// every pod.
func requireRoot(what string) error {
	if os.Geteuid() == 0 {
		return nil
	}
	return fmt.Errorf("%s must run as root: its kubelet runs containers (namespaces, cgroups, mounts, the pod network); "+
		"run it with sudo, or give --disable-agent to a master that should run no pods (or --runtime fake for simulated nodes)", what)
}

// explainTokenError adds what to do to the errors a wrong join token
// causes (role: "server" for --join, "agent" for --server).
func explainTokenError(err error, role string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsUnauthorized(err) && role == "server":
		return fmt.Errorf("%w\nthe master refused the token: --join needs the cluster's server token (<data-dir>/token "+
			"of a master; an agent token cannot join a master)", err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w\nthe master refused the token: it is not a valid agent token of this cluster (mistyped, "+
			"deleted or expired); use <data-dir>/agent-token of a master, or make one there with `skiff token create`", err)
	case errors.Is(err, pki.ErrCAMismatch):
		return fmt.Errorf("%w\nthe token belongs to another cluster, or the URL points at a master of another cluster", err)
	}
	return err
}
