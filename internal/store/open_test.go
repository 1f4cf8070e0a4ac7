package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// filledStore writes a store big enough to span many pages and returns its path,
// its size and its meta page.
func filledStore(t *testing.T) (string, int64, *boltMeta) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "full.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	seedStudies(t, db)
	for tr := uint64(1); tr <= 4; tr++ {
		update(t, db, func(tx *Tx) error {
			var pts []*pb.CurvePoint
			for s := uint64(1); s <= 500; s++ {
				pts = append(pts, point(s))
			}
			return tx.AppendPoints(tr, 1, pts)
		})
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m0, m1 := readMeta(f, 0), readMeta(f, int64(os.Getpagesize()))
	if m0 == nil || m1 == nil {
		t.Fatal("fresh store has an invalid meta page")
	}
	if m1.txid > m0.txid {
		m0 = m1
	}
	return path, fi.Size(), m0
}

// overwrite copies src to dst and fills pages [from, to) with random bytes.
func overwrite(t *testing.T, src, dst string, from, to uint64, random func(int) []byte) {
	t.Helper()
	copyFile(t, src, dst, -1)
	f, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := int64(os.Getpagesize())
	if _, err := f.WriteAt(random(int(int64(to-from)*page)), int64(from)*page); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string, size int64) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if size >= 0 {
		b = b[:size]
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenCorrupt(t *testing.T) {
	full, _, meta := filledStore(t)
	page := int64(os.Getpagesize())
	used := int64(meta.pgid) * page // the file may be longer: bbolt grows it ahead
	if meta.pgid < 16 {
		t.Fatalf("filled store uses %d pages; want many", meta.pgid)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	randomBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		make func(path string)
	}{
		{"random bytes 100", func(p string) { os.WriteFile(p, randomBytes(100), 0o600) }},
		{"random bytes 5000", func(p string) { os.WriteFile(p, randomBytes(5000), 0o600) }},
		{"random bytes 64k", func(p string) { os.WriteFile(p, randomBytes(64<<10), 0o600) }},
		{"random bytes 1M", func(p string) { os.WriteFile(p, randomBytes(1<<20), 0o600) }},
		{"text file", func(p string) { os.WriteFile(p, []byte(strings.Repeat("name: my study\n", 2000)), 0o600) }},
		{"truncated to one page", func(p string) { copyFile(t, full, p, page) }},
		{"truncated to four pages", func(p string) { copyFile(t, full, p, 4*page) }},
		{"truncated to half", func(p string) { copyFile(t, full, p, used/2/page*page) }},
		{"truncated by one page", func(p string) { copyFile(t, full, p, used-page) }},
		{"truncated mid-page", func(p string) { copyFile(t, full, p, used-page/2) }},
		{"freelist page garbage", func(p string) { overwrite(t, full, p, meta.freelist, meta.freelist+1, randomBytes) }},
		{"all data pages garbage", func(p string) { overwrite(t, full, p, 2, meta.pgid, randomBytes) }},
		{"tree pages garbage", func(p string) {
			overwrite(t, full, p, 2, meta.freelist, randomBytes)
			copyFile(t, p, p+".tmp", -1)
			overwrite(t, p+".tmp", p, meta.freelist+1, meta.pgid, randomBytes)
		}},
		{"root page garbage", func(p string) { overwrite(t, full, p, meta.root, meta.root+1, randomBytes) }},
		{"root page zeroed", func(p string) {
			overwrite(t, full, p, meta.root, meta.root+1, func(n int) []byte { return make([]byte, n) })
		}},
		{"bbolt file of another program", func(p string) {
			bdb, err := bolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer bdb.Close()
			if err := bdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("users")); return err }); err != nil {
				t.Fatal(err)
			}
		}},
		{"bad version encoding", func(p string) {
			rawUpdate(t, p, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyVersion, []byte{2}) })
		}},
		{"missing version", func(p string) {
			rawUpdate(t, p, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyVersion) })
		}},
		{"missing bucket", func(p string) { rawUpdate(t, p, func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketWorkers) }) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".db")
			tc.make(path)
			before, _ := os.ReadFile(path)
			db, err := Open(path, Options{})
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open error = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the path", err)
			}
			t.Logf("%v", err)
			// A refused file is left as it was, and its lock is released.
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Error("Open modified the refused file")
			}
			if f, err := os.OpenFile(path, os.O_RDWR, 0); err == nil {
				if err := flockNB(f); err != nil {
					t.Errorf("lock still held after a refused Open: %v", err)
				}
				f.Close()
			}
		})
	}
}

// rawUpdate makes a valid current store at path and then changes it with bbolt
// directly, as damage or another program would.
func rawUpdate(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	if err := bdb.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// TestOpenSlackCut: bbolt grows the file ahead of the pages it uses; losing that
// unused tail loses nothing, and the store opens whole.
func TestOpenSlackCut(t *testing.T) {
	full, size, meta := filledStore(t)
	used := int64(meta.pgid) * int64(os.Getpagesize())
	if size == used {
		t.Fatalf("bbolt did not grow the file past its %d bytes of pages: the test has nothing to cut", used)
	}
	path := filepath.Join(t.TempDir(), "cut.db")
	copyFile(t, full, path, used)
	db := openAtTest(t, path)
	view(t, db, func(tx *Tx) error {
		if got := len(must[[]*pb.CurvePoint](t)(tx.Points(4, 1))); got != 500 {
			t.Errorf("trial 4 has %d points, want 500", got)
		}
		return nil
	})
}

func TestOpenSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyVersion, u64(uint64(currentVersion+5)))
	})
	_, err := Open(path, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open error = %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{path, fmt.Sprintf("version %d", currentVersion+5), fmt.Sprintf("version %d", currentVersion)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestOpenLocked: bbolt's flock belongs to the open file description, so even a
// second Open in this process waits for the lock, and gives up after Timeout.
func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locked.db")
	first, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, timeout := range []time.Duration{0, 200 * time.Millisecond} {
		t.Run(fmt.Sprint("timeout ", timeout), func(t *testing.T) {
			start := time.Now()
			db, err := Open(path, Options{Timeout: timeout})
			waited := time.Since(start)
			if err == nil {
				db.Close()
				t.Fatal("second Open succeeded while the first holds the file")
			}
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("error = %v, want ErrLocked", err)
			}
			for _, want := range []string{path, "another process holds"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			wantWait := timeout
			if wantWait == 0 {
				wantWait = defaultTimeout
			}
			if waited < wantWait/2 || waited > wantWait+2*time.Second {
				t.Errorf("waited %v for the lock, want about %v", waited, wantWait)
			}
		})
	}
	// The holder is unaffected, and the file opens once it lets go.
	view(t, first, func(tx *Tx) error { _, err := tx.Studies(); return err })
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	openAtTest(t, path)
}

func TestOpenOtherErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		path string
	}{
		{"directory", dir},
		{"missing parent", filepath.Join(dir, "no", "such", "dir", "x.db")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.path, Options{})
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrLocked) {
				t.Errorf("error = %v, want a plain I/O error", err)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name the path", err)
			}
		})
	}
}

func TestOpenCreatesCurrentSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fresh.db")
	db := openAtTest(t, path)
	if v := version(t, db); v != currentVersion {
		t.Errorf("version = %d, want %d", v, currentVersion)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, want 0600", fi.Mode().Perm())
	}
	if db.bolt.NoSync {
		t.Error("NoSync is set; commits must fsync")
	}
}

func version(t *testing.T, db *DB) int {
	t.Helper()
	var v int
	if err := db.bolt.View(func(tx *bolt.Tx) (err error) { v, err = schemaVersion(tx); return err }); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDamagedPage: whichever page is damaged, Open or Check reports ErrCorrupt,
// or the page was unused and every record reads back whole. Nothing panics.
func TestDamagedPage(t *testing.T) {
	full, _, meta := filledStore(t)
	rnd := rand.New(rand.NewPCG(3, 4))
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	dir := t.TempDir()
	var refused int
	for id := uint64(2); id < meta.pgid; id++ {
		path := filepath.Join(dir, fmt.Sprintf("page%d.db", id))
		overwrite(t, full, path, id, id+1, garbage)
		db, err := Open(path, Options{})
		if err == nil {
			err = db.Check()
			if err == nil {
				err = db.View(func(tx *Tx) error {
					for tr := uint64(1); tr <= 4; tr++ {
						pts, err := tx.Points(tr, 1)
						if err != nil {
							return err
						}
						if len(pts) != 500 {
							return fmt.Errorf("trial %d has %d points, want 500", tr, len(pts))
						}
					}
					return nil
				})
				if err != nil {
					t.Errorf("page %d: Check passed but reading failed: %v", id, err)
				}
			}
			db.Close()
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("page %d: error = %v, want ErrCorrupt", id, err)
			}
			refused++
		}
	}
	t.Logf("%d of %d damaged pages refused; the others were free pages", refused, meta.pgid-2)
	if refused == 0 {
		t.Error("no damaged page was noticed")
	}
}
