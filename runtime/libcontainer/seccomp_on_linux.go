//go:build seccomp

package libcontainer

// seccompBuilt: libcontainer was built with libseccomp (-tags seccomp).
const seccompBuilt = true
