package libcontainer

import (
	"fmt"

	"github.com/moby/sys/devices"
	devconfig "github.com/opencontainers/cgroups/devices/config"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// withHostDevices adds the host's device nodes (all of /dev but pts, shm,
// mqueue and the console, as runc's and containerd's privileged mode) to
// a container's device list, keeping the entries it has.
func withHostDevices(have []*devconfig.Device) ([]*devconfig.Device, error) {
	host, err := devices.HostDevices()
	if err != nil {
		return nil, fmt.Errorf("host devices: %w", err)
	}
	seen := map[string]bool{}
	for _, d := range have {
		seen[d.Path] = true
	}
	for _, d := range host {
		if !seen[d.Path] {
			seen[d.Path] = true
			have = append(have, d)
		}
	}
	return have, nil
}

// deviceCgroupRules turns device cgroup rules into OCI ones.
func deviceCgroupRules(rules []*devconfig.Rule) []specs.LinuxDeviceCgroup {
	out := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, r := range rules {
		d := specs.LinuxDeviceCgroup{Allow: r.Allow, Type: string(r.Type), Access: string(r.Permissions)}
		if r.Major != devconfig.Wildcard {
			maj := r.Major
			d.Major = &maj
		}
		if r.Minor != devconfig.Wildcard {
			mnr := r.Minor
			d.Minor = &mnr
		}
		out = append(out, d)
	}
	return out
}
