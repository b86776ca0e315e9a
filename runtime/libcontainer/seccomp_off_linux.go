//go:build !seccomp

package libcontainer

// seccompBuilt: this binary was built without -tags seccomp, so
// libcontainer cannot load seccomp filters.
const seccompBuilt = false
