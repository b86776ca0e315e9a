package main

import (
	"github.com/spf13/pflag"

	"github.com/skiff-io/skiff/server/admission"
)

// podSecurityFile is the --pod-security-admission-config-file flag: the
// file is read and checked when the flag is parsed.
type podSecurityFile struct {
	path string
	cfg  **admission.PodSecurityConfig
}

func (f *podSecurityFile) String() string { return f.path }
func (f *podSecurityFile) Type() string   { return "file" }

func (f *podSecurityFile) Set(path string) error {
	cfg, err := admission.LoadPodSecurityConfig(path)
	if err != nil {
		return err
	}
	f.path, *f.cfg = path, cfg
	return nil
}

// addPodSecurityFlags adds the PodSecurity admission settings of a master.
func addPodSecurityFlags(f *pflag.FlagSet, cfg **admission.PodSecurityConfig) {
	f.Var(&podSecurityFile{cfg: cfg}, "pod-security-admission-config-file",
		"PodSecurityConfiguration (pod-security.admission.config.k8s.io/v1) with the cluster's default Pod Security levels and exemptions; "+
			"it replaces the default (enforce baseline, audit and warn restricted, kube-system exempt) entirely")
}
