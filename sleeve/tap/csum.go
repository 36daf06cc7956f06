package tap

import "weavemesh.dev/weave/internal/csum"

// csumAdd and csumFold are the shared checksum arithmetic (internal/csum).
func csumAdd(sum uint64, b []byte) uint64 { return csum.Add(sum, b) }

func csumFold(s uint64) uint16 { return csum.Fold(s) }

// checksum is the Internet checksum of b (RFC 1071), ready to store.
func checksum(b []byte, initial uint64) uint16 {
	return ^csumFold(csumAdd(initial, b))
}
