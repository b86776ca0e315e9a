package fsm

// Unexported decoders, for the fuzz targets of package fsm_test.
var (
	DecodeEntry          = decodeEntry
	DecodeMutationBinary = decodeMutationBinary
)

// AppendMutationBinary appends the binary form of m (the body of a
// MutationType entry) to b.
func AppendMutationBinary(b []byte, m *Mutation) []byte { return encodeMutationBinary(b, m) }
