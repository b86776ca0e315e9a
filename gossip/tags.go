package gossip

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ErrInvalidTags is wrapped by every refusal of a member's address tags.
// Any member holding the gossip key sets its own tags: what they say is
// checked before it is used.
var ErrInvalidTags = errors.New("invalid gossip member tags")

// APIHost returns the host:port of the member's API URL (TagAPI), which
// must be https://HOST[:PORT] with nothing else.
func (m Member) APIHost() (string, error) {
	s := m.Tags[TagAPI]
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %s %q: %w", ErrInvalidTags, TagAPI, s, err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("%w: %s %q is not https://HOST[:PORT]", ErrInvalidTags, TagAPI, s)
	}
	if u.Hostname() == "" || strings.HasSuffix(u.Host, ":") || (u.Port() != "" && !validPort(u.Port())) {
		return "", fmt.Errorf("%w: %s %q: bad host or port", ErrInvalidTags, TagAPI, s)
	}
	if strings.Contains(u.Host, "%") {
		// An IPv6 zone: the host:port it gives is no URL host again.
		return "", fmt.Errorf("%w: %s %q: a zone is no master address", ErrInvalidTags, TagAPI, s)
	}
	return u.Host, nil
}

// RaftAddr returns the member's Raft address (TagRaft), host:port as
// net.JoinHostPort writes it.
func (m Member) RaftAddr() (string, error) {
	s := m.Tags[TagRaft]
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%w: %s %q: %w", ErrInvalidTags, TagRaft, s, err)
	}
	if host == "" || !validPort(port) || net.JoinHostPort(host, port) != s {
		return "", fmt.Errorf("%w: %s %q is not HOST:PORT", ErrInvalidTags, TagRaft, s)
	}
	return s, nil
}

// validPort: a decimal port number 1-65535, as strconv writes it.
func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n <= 65535 && strconv.Itoa(n) == s
}
