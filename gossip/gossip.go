// Package gossip is Skiff's membership among every master and node:
// hashicorp/serf (SWIM with Lifeguard over memberlist) behind the
// Membership interface. Members carry tags naming their role, node name
// and API, Raft and kubelet addresses; traffic is encrypted with a keyring
// whose first key is derived from the cluster's join secret and which is
// kept in the member's data dir, so that restarts and rotations survive.
//
// The Raft leader reads members' health from here (failed and left
// members) and the node lifecycle controller combines it with the nodes'
// Leases (server/controller/nodelifecycle).
package gossip

import (
	"errors"
	"net"
	"strconv"
	"time"
)

// Role of a member.
const (
	RoleServer = "server"
	RoleAgent  = "agent"
	// RoleWitness is a Raft voter that serves no API (`skiff witness`).
	RoleWitness = "witness"
)

// Tag keys every member carries.
const (
	TagRole    = "role"
	TagNode    = "node"
	TagAPI     = "api"
	TagRaft    = "raft"
	TagKubelet = "kubelet"
	// TagStopping is set (to the time, RFC 3339) by a member about to
	// stop on purpose (SIGTERM: a restart, an upgrade), just before it
	// shuts down without leaving: the failure verdict that follows is a
	// planned stop, which the node lifecycle controller leaves to the
	// node's Lease instead of marking the node at once.
	TagStopping = "stopping"
)

// Status is a member's state as this member sees it.
type Status string

const (
	StatusAlive   Status = "alive"
	StatusLeaving Status = "leaving"
	StatusLeft    Status = "left"
	StatusFailed  Status = "failed"
)

// Member is one gossip member.
type Member struct {
	Name string `json:"name"`
	// Addr is the member's gossip address, host:port.
	Addr   string            `json:"addr"`
	Tags   map[string]string `json:"tags,omitempty"`
	Status Status            `json:"status"`
	// Since is when this member last saw the status change (the first
	// time it saw the member for members known before it started).
	Since time.Time `json:"since"`
}

// Role is the member's role tag.
func (m Member) Role() string { return m.Tags[TagRole] }

// Down reports whether gossip considers the member gone (failed or left).
func (m Member) Down() bool { return m.Status == StatusFailed || m.Status == StatusLeft }

// Stopping reports whether the member announced a planned stop
// (TagStopping) before it went.
func (m Member) Stopping() bool { return m.Tags[TagStopping] != "" }

// AnnounceStop tags the local member as stopping on purpose
// (TagStopping) and waits up to wait for the tag to spread; the caller
// then shuts the member down.
func AnnounceStop(m Membership, wait time.Duration) error {
	tags := map[string]string{}
	for k, v := range m.Local().Tags {
		tags[k] = v
	}
	tags[TagStopping] = time.Now().UTC().Format(time.RFC3339)
	if err := m.SetTags(tags); err != nil {
		return err
	}
	time.Sleep(wait)
	return nil
}

// EventType is what happened to members.
type EventType string

const (
	EventJoin   EventType = "member-join"
	EventLeave  EventType = "member-leave"
	EventFailed EventType = "member-failed"
	EventUpdate EventType = "member-update"
	EventReap   EventType = "member-reap"
)

// Event is a change of some members.
type Event struct {
	Type    EventType
	Members []Member
}

// KeyStatus is the cluster's view of the keyring, from a key query.
type KeyStatus struct {
	// Members is how many members memberlist knows; Responses how many
	// answered, Errors how many refused.
	Members, Responses, Errors int
	// Keys maps a base64 key to how many members hold it; Primary the
	// same for primary keys.
	Keys    map[string]int    `json:"keys"`
	Primary map[string]int    `json:"primary"`
	Failed  map[string]string `json:"failed,omitempty"`
}

// Membership is this process's gossip member.
type Membership interface {
	// Join contacts existing members (host:port) and returns how many
	// answered.
	Join(addrs []string) (int, error)
	// Leave tells the others this member is going away on purpose.
	Leave() error
	// Shutdown stops gossiping at once (others will see it fail).
	Shutdown() error
	// Members are every member known, this one included.
	Members() []Member
	// Local is this member.
	Local() Member
	// Subscribe returns a channel of membership events; cancel stops
	// them. Events are dropped for a subscriber that does not keep up.
	Subscribe() (<-chan Event, func())
	// SetTags replaces this member's tags and tells the others.
	SetTags(tags map[string]string) error
	// Keys returns this member's keyring (base64, primary first).
	Keys() []string
	// SetLocalKeys makes keys (base64, primary first) this member's
	// keyring without asking the others (a member that missed a
	// rotation while it was down).
	SetLocalKeys(keys []string) error
	// InstallKey, UseKey and RemoveKey change the keyring of every
	// member; ListKeys asks every member for its keyring.
	InstallKey(key string) (KeyStatus, error)
	UseKey(key string) (KeyStatus, error)
	RemoveKey(key string) (KeyStatus, error)
	ListKeys() (KeyStatus, error)
}

// ErrShutdown: the member was shut down.
var ErrShutdown = errors.New("gossip: member shut down")

// JoinHostPort formats a gossip address.
func JoinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// JoinInfo is what a master tells a member about to join gossip: the
// current keyring (base64, primary first) and the masters' gossip
// addresses. It is only served over TLS to authenticated masters, nodes
// and cluster admins.
type JoinInfo struct {
	Keys    []string `json:"keys"`
	Servers []string `json:"servers"`
}

// RotateResult is the outcome of a key rotation.
type RotateResult struct {
	// Fingerprint is the first 8 characters of the new key's SHA-256
	// (the key itself is never printed).
	Fingerprint string `json:"fingerprint"`
	Members     int    `json:"members"`
	Removed     int    `json:"removedKeys"`
	// Failed lists members that refused a step, with their message.
	Failed map[string]string `json:"failed,omitempty"`
}
