package store

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Record checksums (schema version 4). bbolt has no checksums of its own pages, so
// a damaged page can decode into a record that looks valid (a mixture that no longer
// sums to one). Every value but meta/version therefore ends with a CRC-32C of where
// it is stored and what it holds:
//
//	value = payload ‖ crc32c(bucket path ‖ 0x00 ‖ key ‖ payload)   (4 bytes, big-endian)
//
// The bucket path is the top-level bucket's name, followed for points records by the
// trial's 8-byte key. Covering the path and key as well as the payload means a value
// that ends up under another key (a damaged branch page) fails its check too. Every
// reader checks it before decoding, and a mismatch is ErrCorrupt naming the record,
// so damaged bytes are never served as good data. meta/version stays a bare uint64:
// it is read before anything else to know which format the file has.

// checksumLen is the size of the checksum that ends every sealed value.
const checksumLen = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordSum is the checksum of payload stored under key in the bucket at path.
func recordSum(path, key, payload []byte) uint32 {
	h := crc32.Update(0, castagnoli, path)
	h = crc32.Update(h, castagnoli, []byte{0})
	h = crc32.Update(h, castagnoli, key)
	return crc32.Update(h, castagnoli, payload)
}

// seal returns payload with its checksum appended, in a new slice: bbolt keeps the
// value it is given until the transaction commits.
func seal(path, key, payload []byte) []byte {
	v := make([]byte, len(payload), len(payload)+checksumLen)
	copy(v, payload)
	return binary.BigEndian.AppendUint32(v, recordSum(path, key, payload))
}

// unseal checks a stored value's checksum and returns its payload (a view of v).
// name says which record it is, for the error.
func unseal(name string, path, key, v []byte) ([]byte, error) {
	if len(v) < checksumLen {
		return nil, fmt.Errorf("%s (bucket %s, key %x): value of %d bytes is too short to hold its checksum: %w",
			name, bucketLabel(path), key, len(v), ErrCorrupt)
	}
	payload := v[:len(v)-checksumLen]
	stored := binary.BigEndian.Uint32(v[len(v)-checksumLen:])
	if sum := recordSum(path, key, payload); sum != stored {
		return nil, fmt.Errorf("%s (bucket %s, key %x): checksum mismatch (stored %08x, computed %08x), the record is damaged: %w",
			name, bucketLabel(path), key, stored, sum, ErrCorrupt)
	}
	return payload, nil
}

// pointsPath is the bucket path of a trial's points records.
func pointsPath(trialKey []byte) []byte {
	return append(append([]byte(nil), bucketPoints...), trialKey...)
}

// bucketLabel prints a bucket path: "trials", or "points/17" for a trial's points.
func bucketLabel(path []byte) string {
	if len(path) == len(bucketPoints)+8 && string(path[:len(bucketPoints)]) == string(bucketPoints) {
		return fmt.Sprintf("%s/%d", bucketPoints, binary.BigEndian.Uint64(path[len(bucketPoints):]))
	}
	return string(path)
}
