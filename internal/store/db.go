package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Error classes; match them with errors.Is. Returned errors wrap them with the
// path or id they are about.
var (
	// ErrNotFound: no study, trial or worker with that id.
	ErrNotFound = errors.New("not found")
	// ErrLocked: another process (or another DB in this one) holds the file.
	ErrLocked = errors.New("store locked")
	// ErrSchemaTooNew: the file was written by a newer mixopt than this binary.
	ErrSchemaTooNew = errors.New("store schema too new")
	// ErrCorrupt: the file is not a mixopt store, or it is damaged.
	ErrCorrupt = errors.New("store corrupt")
)

// defaultTimeout bounds how long Open waits for the file lock, so a second
// coordinator started by mistake fails fast instead of hanging.
const defaultTimeout = time.Second

// Options configures Open.
type Options struct {
	// Timeout is how long Open waits for the file lock held by another process
	// (zero or negative: 1s).
	Timeout time.Duration
	// OnWriteError, when set, is called with every failed commit (an ErrWrite), after
	// the transaction was rolled back and without any store lock held: the coordinator
	// logs and counts them.
	OnWriteError func(err error)
}

// DB is an open store. It is safe for concurrent use: any number of View
// transactions run alongside at most one Update.
type DB struct {
	bolt   *bolt.DB
	path   string
	health writeHealth
}

// Open opens or creates the store at path and brings its schema up to date.
// It never panics on a bad file: it returns ErrLocked when another process holds
// the file, ErrCorrupt when the file is not a valid store, and ErrSchemaTooNew when
// a newer mixopt wrote it.
func Open(path string, opts Options) (*DB, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		// bbolt reports a file shorter than its two meta pages with an unexported
		// error; classify it here instead of matching its text.
		if fi.Size() < 2*int64(os.Getpagesize()) {
			return nil, fmt.Errorf("open store %s: file is %d bytes, too short to be a database: %w", path, fi.Size(), ErrCorrupt)
		}
		if err := preflightLocked(path, timeout); err != nil {
			return nil, openError(path, timeout, err)
		}
	}
	bdb, err := openBolt(path, timeout, false)
	if err != nil {
		return nil, openError(path, timeout, err)
	}
	db := &DB{bolt: bdb, path: path, health: writeHealth{onError: opts.OnWriteError, now: time.Now}}
	if err := db.prepare(); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, nil
}

// openError says why bbolt could not open path, by error class.
func openError(path string, timeout time.Duration, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("open store %s: another process holds the file (waited %s for its lock): %w", path, timeout, ErrLocked)
	case errors.Is(err, ErrCorrupt):
		return fmt.Errorf("open store %s: %w", path, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return fmt.Errorf("open store %s: not a valid bbolt file (%v): %w", path, err, ErrCorrupt)
	}
	return fmt.Errorf("open store %s: %w", path, err)
}

// preflightLocked runs preflight while a read-only bbolt handle holds the shared
// lock, so that a coordinator writing the file from another process cannot change
// it under the plain reads (and such a file reports ErrLocked, not damage). A
// read-only open maps the file and validates the meta pages but reads nothing
// else, so it does not panic on a damaged file.
func preflightLocked(path string, timeout time.Duration) error {
	ro, err := openBolt(path, timeout, true)
	if err != nil {
		return err
	}
	defer func() { _ = ro.Close() }()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return preflight(f, fi.Size())
}

// openBolt is bolt.Open turning a panic into an error, as a last resort: preflight
// has already refused the damage bbolt panics on while opening. SetPanicOnFault
// turns a fault on the mapping (a page past the end of the file) into a panic
// this goroutine can recover.
func openBolt(path string, timeout time.Duration, readOnly bool) (bdb *bolt.DB, err error) {
	var file *os.File
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// bbolt never returned its DB, so close the file here; its mapping still
			// references the file, and so keeps the lock, until the process exits.
			if file != nil {
				_ = file.Close()
			}
			bdb, err = nil, fmt.Errorf("bbolt panicked reading the file (%v): %w", r, berrors.ErrInvalid)
		}
	}()
	// Default durability on purpose: fsync on every commit (NoSync stays false).
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, OpenFile: openFile, ReadOnly: readOnly})
}

// prepare migrates the file to currentVersion, in one write transaction so that a
// crash leaves either the old or the new version, and checks the buckets exist.
// bbolt panics on a damaged page; the recovered panic has rolled its transaction
// back, so Open can still close the DB and release the lock.
func (db *DB) prepare() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt panicked reading the file (%v): %w", r, ErrCorrupt)
		}
	}()
	var migrateNeeded bool
	err = db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		migrateNeeded, err = needsMigration(tx)
		return err
	})
	if err != nil || !migrateNeeded {
		if err == nil {
			err = db.bolt.View(checkBuckets)
		}
		return err
	}
	return db.bolt.Update(func(tx *bolt.Tx) error {
		if err := migrate(tx, currentVersion); err != nil {
			return err
		}
		return checkBuckets(tx)
	})
}

// checkBuckets makes sure every bucket of the current schema exists, so that Tx
// methods can treat a missing bucket as corruption.
func checkBuckets(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("bucket %s missing: %w", name, ErrCorrupt)
		}
	}
	return nil
}

var allBuckets = [][]byte{bucketMeta, bucketStudies, bucketTrials, bucketStudyTrials, bucketPoints, bucketWorkers, bucketPolicyState}

// Close closes the file and releases its lock.
func (db *DB) Close() error {
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", db.path, err)
	}
	return nil
}

// Path is the file the store was opened from.
func (db *DB) Path() string { return db.path }

// Update runs fn in one write transaction: everything fn wrote is committed (and
// fsynced) if it returns nil, and nothing is if it returns an error or panics.
// fn may run at most once, but must have no side effects besides tx so that a
// failed commit leaves nothing to undo. Do not call Update or View inside fn.
// A commit that fails (disk full, I/O error) returns an error wrapping ErrWrite.
func (db *DB) Update(fn func(tx *Tx) error) error {
	var fnErr error
	err := db.bolt.Update(func(btx *bolt.Tx) error {
		if fnErr = run(btx, fn); fnErr != nil {
			return fnErr
		}
		return db.health.injected()
	})
	return db.committed(fnErr, err)
}

// Batch runs fn in a write transaction shared with other concurrent Batch calls, so that
// many small writers pay for one fsync between them. fn may run more than once (bbolt
// re-runs it alone when another function of the batch failed), so it must be idempotent:
// it sets every result it hands back afresh on each run. A failed commit returns an
// error wrapping ErrWrite, as Update does.
func (db *DB) Batch(fn func(tx *Tx) error) error {
	var fnErr error
	err := db.bolt.Batch(func(btx *bolt.Tx) error {
		if fnErr = run(btx, fn); fnErr != nil {
			return fnErr
		}
		return db.health.injected()
	})
	return db.committed(fnErr, err)
}

// committed turns the outcome of a write transaction into the caller's error: fn's
// own error as it was (bbolt rolled back), or a failed commit as ErrWrite, recorded
// in WriteHealth.
func (db *DB) committed(fnErr, commitErr error) error {
	if fnErr != nil {
		return fnErr
	}
	if commitErr != nil {
		err := fmt.Errorf("commit to store %s: %w: %w", db.path, ErrWrite, commitErr)
		db.health.failed(err)
		return err
	}
	db.health.ok()
	return nil
}

// Backup writes a consistent copy of the database to w from one read transaction, so
// writers go on meanwhile; the copy opens like the original.
func (db *DB) Backup(w io.Writer) (int64, error) {
	var n int64
	err := db.bolt.View(func(btx *bolt.Tx) error {
		var err error
		n, err = btx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("back up store %s: %w", db.path, err)
	}
	return n, nil
}

// View runs fn in a read-only transaction that sees one consistent snapshot.
func (db *DB) View(fn func(tx *Tx) error) error {
	return db.bolt.View(func(btx *bolt.Tx) error { return run(btx, fn) })
}

// run hands fn a Tx that goes dead when fn returns, so a Tx kept past its
// transaction gives an error instead of reading unmapped memory.
func run(btx *bolt.Tx, fn func(tx *Tx) error) error {
	tx := &Tx{btx: btx}
	defer func() { tx.btx = nil }()
	return fn(tx)
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	// Records is how many records were read and checked.
	Records uint64
	// Problems are the damaged records and broken invariants found, each wrapping
	// ErrCorrupt and naming its bucket and key; at most maxCheckErrors and one that
	// counts the rest. None: no damage found.
	Problems []error
}

// Verify reads every record in one read transaction and checks its checksum and
// this package's invariants, as Check does, but not bbolt's page structure: writers
// go on meanwhile, so a running coordinator can run it on request. It reads the
// whole file, so it takes time in proportion to what is stored, and the one read
// transaction keeps bbolt from remapping the file meanwhile (a writer that must grow
// the file waits for it). Damage is in Problems; the error is for a Verify that
// could not run.
func (db *DB) Verify() (res VerifyResult, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// bbolt's View rolled back its transaction on the way out.
			res.Problems = append(res.Problems, fmt.Errorf("bbolt panicked reading the file (%v): %w", r, ErrCorrupt))
		}
	}()
	err = db.bolt.View(func(btx *bolt.Tx) error {
		n, err := verifySchema(btx)
		res.Records = n
		var joined interface{ Unwrap() []error }
		switch {
		case err == nil:
		case errors.As(err, &joined):
			res.Problems = joined.Unwrap()
		default:
			res.Problems = []error{err}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("verify store %s: %w", db.path, err)
	}
	return res, nil
}

// Check verifies this package's invariants (schema version, ids, the study index
// in both directions, points records) and then bbolt's page structure (tx.Check).
// Open reads only the pages it needs; Check reads every one, so call it at
// start-up to find damage before a transaction trips over it. It walks the tree
// itself first, in this goroutine where a damaged page's panic or fault can be
// recovered, before bbolt's checker (which runs in a goroutine of its own) reads
// it. It holds the write lock while it runs, because bbolt's check is not safe
// beside a writer in a read transaction. It decodes every curve point record,
// to check their seqs, so its time grows with the number of points stored.
func (db *DB) Check() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("check store %s: bbolt panicked reading the file (%v): %w", db.path, r, ErrCorrupt)
		}
	}()
	btx, err := db.bolt.Begin(true)
	if err != nil {
		return fmt.Errorf("check store %s: %w", db.path, err)
	}
	defer func() { _ = btx.Rollback() }()
	if err := checkSchema(btx); err != nil {
		return fmt.Errorf("check store %s: %w", db.path, err)
	}
	var errs []error
	for err := range btx.Check() {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("check store %s: %v: %w", db.path, errors.Join(errs...), ErrCorrupt)
	}
	return nil
}
