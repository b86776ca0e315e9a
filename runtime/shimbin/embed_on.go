//go:build shimembed

package shimbin

import _ "embed"

// skiff-shim is built here by `make build` (git ignores it).
//
//go:embed skiff-shim
var embedded []byte
