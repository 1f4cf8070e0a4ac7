package store

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk format (version 2), as far as preflight reads it. Integers are
// in the machine's byte order because bbolt writes its structs from memory.
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	metaSize         = 64 // magic, version, pageSize, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	metaChecksummed  = 56 // the checksum covers the bytes before it
	freelistPageFlag = 0x10
	noFreelist       = ^uint64(0)
)

type boltMeta struct {
	pageSize                   uint32
	root, freelist, pgid, txid uint64
}

var native = binary.NativeEndian

// readMeta decodes and validates the meta page at off; nil if invalid.
func readMeta(f *os.File, off int64) *boltMeta {
	var b [pageHeaderSize + metaSize]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return nil
	}
	m := b[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(m[:metaChecksummed])
	if native.Uint32(m[0:]) != boltMagic || native.Uint32(m[4:]) != boltVersion || native.Uint64(m[56:]) != h.Sum64() {
		return nil
	}
	return &boltMeta{
		pageSize: native.Uint32(m[8:]),
		root:     native.Uint64(m[16:]),
		freelist: native.Uint64(m[32:]),
		pgid:     native.Uint64(m[40:]),
		txid:     native.Uint64(m[48:]),
	}
}

// preflight checks, with plain reads, what bbolt trusts when it opens a file for
// writing: that a meta page is valid, the file is as long as the meta page says,
// and the freelist it loads is well formed. bbolt panics on those (or faults, for
// a truncated file) while it has the file mapped and locked, and a recovered panic
// would leave the mapping, and so the lock, behind until the process exits. Pages
// of the B+tree are read later, inside transactions the store can close cleanly.
func preflight(f *os.File, size int64) error {
	// Find the page size as bbolt does: from meta 0, else from meta 1 at one of
	// the page sizes bbolt supports.
	var meta0, meta1 *boltMeta
	var pageSize int64
	if meta0 = readMeta(f, 0); meta0 != nil {
		pageSize = int64(meta0.pageSize)
	} else {
		for i := range 15 {
			if m := readMeta(f, 1024<<i); m != nil && int64(m.pageSize) == 1024<<i {
				meta1, pageSize = m, 1024<<i
				break
			}
		}
	}
	if pageSize < 1024 || pageSize&(pageSize-1) != 0 {
		return fmt.Errorf("no valid meta page: %w", ErrCorrupt)
	}
	if meta0 != nil {
		meta1 = readMeta(f, pageSize)
	}
	// bbolt uses the valid meta page with the higher transaction id.
	m := meta0
	if m == nil || (meta1 != nil && meta1.txid > m.txid) {
		m = meta1
	}
	if m.pgid > uint64(size/pageSize) { // divide: pgid × pageSize may overflow on garbage
		return fmt.Errorf("file is %d bytes but its %d pages of %d need more, it was truncated: %w", size, m.pgid, pageSize, ErrCorrupt)
	}
	if m.root < 2 || m.root >= m.pgid {
		return fmt.Errorf("root page %d outside 2..%d: %w", m.root, m.pgid-1, ErrCorrupt)
	}
	if m.freelist == noFreelist {
		return nil // bbolt rebuilds it by walking the tree, in a transaction
	}
	return checkFreelist(f, m, pageSize)
}

func checkFreelist(f *os.File, m *boltMeta, pageSize int64) error {
	if m.freelist < 2 || m.freelist >= m.pgid {
		return fmt.Errorf("freelist page %d outside 2..%d: %w", m.freelist, m.pgid-1, ErrCorrupt)
	}
	off := int64(m.freelist) * pageSize
	var hdr [pageHeaderSize + 8]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil && err != io.EOF {
		return fmt.Errorf("read freelist page %d: %w", m.freelist, err)
	}
	flags, count, overflow := native.Uint16(hdr[8:]), uint64(native.Uint16(hdr[10:])), uint64(native.Uint32(hdr[12:]))
	if flags != freelistPageFlag {
		return fmt.Errorf("freelist page %d has page flags %#x: %w", m.freelist, flags, ErrCorrupt)
	}
	if m.freelist+overflow >= m.pgid {
		return fmt.Errorf("freelist pages %d+%d pass the end at %d: %w", m.freelist, overflow, m.pgid, ErrCorrupt)
	}
	first := int64(pageHeaderSize)
	if count == 0xFFFF { // the real count is the first element
		count, first = native.Uint64(hdr[pageHeaderSize:]), pageHeaderSize+8
	}
	if count > uint64((int64(overflow)+1)*pageSize-first)/8 {
		return fmt.Errorf("freelist page %d lists %d ids, more than its %d pages hold: %w", m.freelist, count, overflow+1, ErrCorrupt)
	}
	buf := make([]byte, count*8)
	if _, err := f.ReadAt(buf, off+first); err != nil {
		return fmt.Errorf("read freelist page %d: %w", m.freelist, err)
	}
	seen := make(map[uint64]bool, count)
	for i := range count {
		id := native.Uint64(buf[i*8:])
		if id < 2 || id >= m.pgid || seen[id] {
			return fmt.Errorf("freelist page %d lists page %d, out of range or twice: %w", m.freelist, id, ErrCorrupt)
		}
		seen[id] = true
	}
	return nil
}
