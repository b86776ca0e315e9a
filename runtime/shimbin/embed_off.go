//go:build !shimembed

package shimbin

// Without the shimembed tag nothing is embedded (see the package doc).
var embedded []byte
