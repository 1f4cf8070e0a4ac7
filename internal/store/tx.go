package store

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/mixopt/mixopt/internal/store/storepb"
	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Tx is one transaction, valid only inside the function given to Update or View.
// Every message it returns is decoded into fresh memory owned by the caller, never
// a view of bbolt's mmap, so it stays valid after the transaction ends.
type Tx struct {
	btx *bolt.Tx
}

var errTxDone = errors.New("store transaction used after its function returned")

// marshal encodes deterministically so equal messages store equal bytes (the
// eval map of CurvePoint would otherwise be written in random order).
var marshal = proto.MarshalOptions{Deterministic: true}.Marshal

// bucket returns a top-level bucket; Open made sure they all exist, so a missing
// one means the file was damaged.
func (tx *Tx) bucket(name []byte) (*bolt.Bucket, error) {
	if tx.btx == nil {
		return nil, errTxDone
	}
	b := tx.btx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("bucket %s missing: %w", name, ErrCorrupt)
	}
	return b, nil
}

// decode unmarshals a stored value. proto.Unmarshal copies what it keeps (our
// messages have no lazy fields), so m does not alias bbolt's memory.
func decode(v []byte, m proto.Message, what string, id uint64) error {
	if err := proto.Unmarshal(v, m); err != nil {
		return fmt.Errorf("decode %s %d: %v: %w", what, id, err, ErrCorrupt)
	}
	return nil
}

// nextID allocates the next id of a bucket's sequence.
func (tx *Tx) nextID(name []byte, what string) (uint64, error) {
	b, err := tx.bucket(name)
	if err != nil {
		return 0, fmt.Errorf("next %s id: %w", what, err)
	}
	id, err := b.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("next %s id: %w", what, err)
	}
	return id, nil
}

// get decodes the value stored under id into m.
func (tx *Tx) get(name []byte, what string, id uint64, m proto.Message) error {
	b, err := tx.bucket(name)
	if err != nil {
		return fmt.Errorf("get %s %d: %w", what, id, err)
	}
	k := u64(id)
	v := b.Get(k)
	if v == nil {
		return fmt.Errorf("%s %d: %w", what, id, ErrNotFound)
	}
	payload, err := unseal(fmt.Sprintf("%s %d", what, id), name, k, v)
	if err != nil {
		return err
	}
	return decode(payload, m, what, id)
}

// put stores m under id. The id must come from the bucket's sequence: an id past
// it would later be handed out again by Next*ID and overwrite this record.
func (tx *Tx) put(name []byte, what string, id uint64, m proto.Message) error {
	if id == 0 {
		return fmt.Errorf("put %s: id is 0; allocate one with Next%sID", what, title(what))
	}
	b, err := tx.bucket(name)
	if err != nil {
		return fmt.Errorf("put %s %d: %w", what, id, err)
	}
	if seq := b.Sequence(); id > seq {
		return fmt.Errorf("put %s %d: id was never allocated (last allocated is %d); allocate ids with Next%sID", what, id, seq, title(what))
	}
	v, err := marshal(m)
	if err != nil {
		return fmt.Errorf("put %s %d: encode: %w", what, id, err)
	}
	b.FillPercent = appendFillPercent
	k := u64(id)
	if err := b.Put(k, seal(name, k, v)); err != nil {
		return fmt.Errorf("put %s %d: %w", what, id, err)
	}
	return nil
}

// list decodes every value of a bucket, ascending id, keeping those keep accepts.
func list[M proto.Message](tx *Tx, name []byte, what string, newM func() M, keep func(M) bool) ([]M, error) {
	b, err := tx.bucket(name)
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", what, err)
	}
	var out []M
	err = b.ForEach(func(k, v []byte) error {
		id, err := decodeU64(k)
		if err != nil {
			return fmt.Errorf("%s key %x: %w", what, k, err)
		}
		payload, err := unseal(fmt.Sprintf("%s %d", what, id), name, k, v)
		if err != nil {
			return err
		}
		m := newM()
		if err := decode(payload, m, what, id); err != nil {
			return err
		}
		if keep == nil || keep(m) {
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", what, err)
	}
	return out, nil
}

func title(what string) string {
	switch what {
	case "study":
		return "Study"
	case "trial":
		return "Trial"
	case "worker":
		return "Worker"
	}
	return what
}

// mustExist returns ErrNotFound unless the record id exists in the bucket.
func (tx *Tx) mustExist(name []byte, what string, id uint64) error {
	b, err := tx.bucket(name)
	if err != nil {
		return err
	}
	if b.Get(u64(id)) == nil {
		return fmt.Errorf("%s %d: %w", what, id, ErrNotFound)
	}
	return nil
}

// NextStudyID allocates a study id (from 1; never reused, even after a rollback
// of a later transaction it is simply not committed).
func (tx *Tx) NextStudyID() (uint64, error) { return tx.nextID(bucketStudies, "study") }

// Study returns the study with that id, or ErrNotFound.
func (tx *Tx) Study(id uint64) (*pb.Study, error) {
	s := new(pb.Study)
	if err := tx.get(bucketStudies, "study", id, s); err != nil {
		return nil, err
	}
	return s, nil
}

// PutStudy creates or replaces a study; s.Id must come from NextStudyID.
func (tx *Tx) PutStudy(s *pb.Study) error {
	return tx.put(bucketStudies, "study", s.GetId(), s)
}

// Studies returns every study, ascending id.
func (tx *Tx) Studies() ([]*pb.Study, error) {
	return list(tx, bucketStudies, "study", func() *pb.Study { return new(pb.Study) }, nil)
}

// NextTrialID allocates a trial id (from 1).
func (tx *Tx) NextTrialID() (uint64, error) { return tx.nextID(bucketTrials, "trial") }

// Trial returns the trial with that id, or ErrNotFound.
func (tx *Tx) Trial(id uint64) (*pb.Trial, error) {
	t := new(pb.Trial)
	if err := tx.get(bucketTrials, "trial", id, t); err != nil {
		return nil, err
	}
	return t, nil
}

// PutTrial creates or replaces a trial and keeps the study index current (also
// when a replacement names another study). Its study must exist.
func (tx *Tx) PutTrial(t *pb.Trial) error {
	id, studyID := t.GetId(), t.GetStudyId()
	if id == 0 {
		return errors.New("put trial: id is 0; allocate one with NextTrialID")
	}
	if studyID == 0 {
		return fmt.Errorf("put trial %d: study id is 0", id)
	}
	if err := tx.mustExist(bucketStudies, "study", studyID); err != nil {
		return fmt.Errorf("put trial %d: %w", id, err)
	}
	trials, err := tx.bucket(bucketTrials)
	if err != nil {
		return fmt.Errorf("put trial %d: %w", id, err)
	}
	// Read the old study before put overwrites it, to move the index entry.
	var oldStudy uint64
	var hadOld bool
	if v := trials.Get(u64(id)); v != nil {
		payload, err := unseal(fmt.Sprintf("trial %d", id), bucketTrials, u64(id), v)
		if err != nil {
			return fmt.Errorf("put trial %d: %w", id, err)
		}
		old := new(pb.Trial)
		if err := decode(payload, old, "trial", id); err != nil {
			return fmt.Errorf("put trial %d: %w", id, err)
		}
		oldStudy, hadOld = old.GetStudyId(), true
	}
	if err := tx.put(bucketTrials, "trial", id, t); err != nil {
		return err
	}
	idx, err := tx.bucket(bucketStudyTrials)
	if err != nil {
		return fmt.Errorf("put trial %d: %w", id, err)
	}
	if hadOld && oldStudy != studyID {
		if err := idx.Delete(pair(oldStudy, id)); err != nil {
			return fmt.Errorf("put trial %d: unindex from study %d: %w", id, oldStudy, err)
		}
	}
	// The entry's value is only its checksum: it covers the key, so a damaged
	// index key is found too.
	if k := pair(studyID, id); idx.Put(k, seal(bucketStudyTrials, k, nil)) != nil {
		return fmt.Errorf("put trial %d: index under study %d: %w", id, studyID, err)
	}
	return nil
}

// TrialsOfStudy returns the trials of a study, ascending id; ErrNotFound when the
// study does not exist.
func (tx *Tx) TrialsOfStudy(studyID uint64) ([]*pb.Trial, error) {
	if err := tx.mustExist(bucketStudies, "study", studyID); err != nil {
		return nil, fmt.Errorf("trials of study: %w", err)
	}
	idx, err := tx.bucket(bucketStudyTrials)
	if err != nil {
		return nil, fmt.Errorf("trials of study %d: %w", studyID, err)
	}
	var out []*pb.Trial
	prefix := u64(studyID)
	c := idx.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		_, trialID, err := decodePair(k)
		if err != nil {
			return nil, fmt.Errorf("trials of study %d: index key %x: %w", studyID, k, err)
		}
		if _, err := unseal(fmt.Sprintf("study index entry (study %d, trial %d)", studyID, trialID), bucketStudyTrials, k, v); err != nil {
			return nil, fmt.Errorf("trials of study %d: %w", studyID, err)
		}
		t, err := tx.Trial(trialID)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("trials of study %d: index names trial %d, which is missing: %w", studyID, trialID, ErrCorrupt)
		}
		if err != nil {
			return nil, fmt.Errorf("trials of study %d: %w", studyID, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// AllTrials returns every trial in state, ascending id; TRIAL_STATE_UNSPECIFIED
// returns all of them. It scans every trial: it is for restart recovery, not for
// hot paths.
func (tx *Tx) AllTrials(state pb.TrialState) ([]*pb.Trial, error) {
	var keep func(*pb.Trial) bool
	if state != pb.TrialState_TRIAL_STATE_UNSPECIFIED {
		keep = func(t *pb.Trial) bool { return t.GetState() == state }
	}
	return list(tx, bucketTrials, "trial", func() *pb.Trial { return new(pb.Trial) }, keep)
}

// AppendPoints stores a batch of curve points of one attempt of a trial as one
// record. The batch must continue the attempt's curve exactly: its seqs ascend by
// one, and the first is the attempt's last stored seq + 1 (1 when the attempt has
// none). A batch that overlaps what is stored, or leaves a gap, is refused with an
// error naming the seqs, so a caller re-sending points must drop those already
// committed (the scheduler does, by the trial's LastSeq). The trial must exist and
// attempt must be >= 1; the batch is checked before anything is written, and an
// empty batch writes nothing.
func (tx *Tx) AppendPoints(trialID uint64, attempt int32, pts []*pb.CurvePoint) error {
	if attempt < 1 {
		return fmt.Errorf("append points to trial %d: attempt %d, want >= 1", trialID, attempt)
	}
	for i, p := range pts {
		if p == nil {
			return fmt.Errorf("append points to trial %d attempt %d: point %d is nil", trialID, attempt, i)
		}
		if p.GetSeq() == 0 {
			return fmt.Errorf("append points to trial %d attempt %d: point %d has seq 0, want >= 1", trialID, attempt, i)
		}
		if want := pts[0].GetSeq() + uint64(i); p.GetSeq() != want {
			return fmt.Errorf("append points to trial %d attempt %d: point %d has seq %d, want %d (a batch's seqs ascend by one)",
				trialID, attempt, i, p.GetSeq(), want)
		}
	}
	if err := tx.mustExist(bucketTrials, "trial", trialID); err != nil {
		return fmt.Errorf("append points: %w", err)
	}
	if len(pts) == 0 {
		return nil
	}
	root, err := tx.bucket(bucketPoints)
	if err != nil {
		return fmt.Errorf("append points to trial %d: %w", trialID, err)
	}
	trialKey := u64(trialID)
	path := pointsPath(trialKey)
	b := root.Bucket(trialKey)
	var last uint64
	if b != nil {
		if last, err = lastStoredSeq(b, path, uint64(attempt)); err != nil {
			return fmt.Errorf("append points to trial %d attempt %d: %w", trialID, attempt, err)
		}
	}
	first, end := pts[0].GetSeq(), pts[len(pts)-1].GetSeq()
	if first != last+1 {
		if last == 0 {
			return fmt.Errorf("append points to trial %d attempt %d: batch is seqs %d..%d but the attempt has no points stored, so it must start at seq 1",
				trialID, attempt, first, end)
		}
		return fmt.Errorf("append points to trial %d attempt %d: batch is seqs %d..%d but the attempt's last stored seq is %d, so it must start at seq %d (no overlap, no gap)",
			trialID, attempt, first, end, last, last+1)
	}
	// Plain encoding: point records are only ever decoded, never compared, and sorting
	// every point's eval map for a deterministic encoding is a quarter of the cost.
	v, err := proto.Marshal(&storepb.CurvePointBatch{Points: pts})
	if err != nil {
		return fmt.Errorf("append points to trial %d attempt %d: encode seqs %d..%d: %w", trialID, attempt, first, end, err)
	}
	if b == nil {
		if b, err = root.CreateBucket(u64(trialID)); err != nil {
			return fmt.Errorf("append points to trial %d: %w", trialID, err)
		}
	}
	b.FillPercent = appendFillPercent
	k := pair(uint64(attempt), first)
	if err := b.Put(k, seal(path, k, v)); err != nil {
		return fmt.Errorf("append points to trial %d attempt %d seqs %d..%d: %w", trialID, attempt, first, end, err)
	}
	return nil
}

// trialPoints returns the points bucket of a trial, nil when it has no points, and
// ErrNotFound when the trial does not exist.
func (tx *Tx) trialPoints(trialID uint64) (*bolt.Bucket, error) {
	if err := tx.mustExist(bucketTrials, "trial", trialID); err != nil {
		return nil, err
	}
	root, err := tx.bucket(bucketPoints)
	if err != nil {
		return nil, err
	}
	return root.Bucket(u64(trialID)), nil
}

// Points returns one attempt's points, ascending seq (none: nil).
func (tx *Tx) Points(trialID uint64, attempt int32) ([]*pb.CurvePoint, error) {
	if attempt < 1 {
		return nil, fmt.Errorf("points of trial %d: attempt %d, want >= 1", trialID, attempt)
	}
	b, err := tx.trialPoints(trialID)
	if err != nil || b == nil {
		if err != nil {
			err = fmt.Errorf("points: %w", err)
		}
		return nil, err
	}
	var out []*pb.CurvePoint
	path := pointsPath(u64(trialID))
	prefix := u64(uint64(attempt))
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		_, pts, err := decodeRecord(path, k, v, nextSeq(out))
		if err != nil {
			return nil, fmt.Errorf("points of trial %d: %w", trialID, err)
		}
		out = append(out, pts...)
	}
	return out, nil
}

// AllPoints returns the points of every attempt of a trial, each ascending seq
// (none: an empty map).
func (tx *Tx) AllPoints(trialID uint64) (map[int32][]*pb.CurvePoint, error) {
	b, err := tx.trialPoints(trialID)
	if err != nil {
		return nil, fmt.Errorf("points: %w", err)
	}
	out := make(map[int32][]*pb.CurvePoint)
	if b == nil {
		return out, nil
	}
	path := pointsPath(u64(trialID))
	err = b.ForEach(func(k, v []byte) error {
		// Keys ascend by attempt, then seq, so out[attempt] holds the attempt's
		// records before this one, and this one must continue them.
		a, _, _ := decodePair(k)
		next := uint64(1)
		if a >= 1 && a <= 1<<31-1 {
			next = nextSeq(out[int32(a)])
		}
		attempt, pts, err := decodeRecord(path, k, v, next)
		if err != nil {
			return fmt.Errorf("points of trial %d: %w", trialID, err)
		}
		out[attempt] = append(out[attempt], pts...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// NextWorkerID allocates a worker id (from 1).
func (tx *Tx) NextWorkerID() (uint64, error) { return tx.nextID(bucketWorkers, "worker") }

// Worker returns the worker with that id, or ErrNotFound.
func (tx *Tx) Worker(id uint64) (*pb.Worker, error) {
	w := new(pb.Worker)
	if err := tx.get(bucketWorkers, "worker", id, w); err != nil {
		return nil, err
	}
	return w, nil
}

// PutWorker creates or replaces a worker; w.Id must come from NextWorkerID.
func (tx *Tx) PutWorker(w *pb.Worker) error {
	return tx.put(bucketWorkers, "worker", w.GetId(), w)
}

// Workers returns every worker, ascending id.
func (tx *Tx) Workers() ([]*pb.Worker, error) {
	return list(tx, bucketWorkers, "worker", func() *pb.Worker { return new(pb.Worker) }, nil)
}

// PolicyState returns the policy's saved state for a study: nil, nil when none is
// saved; ErrNotFound when the study does not exist.
func (tx *Tx) PolicyState(studyID uint64) ([]byte, error) {
	if err := tx.mustExist(bucketStudies, "study", studyID); err != nil {
		return nil, fmt.Errorf("policy state: %w", err)
	}
	b, err := tx.bucket(bucketPolicyState)
	if err != nil {
		return nil, fmt.Errorf("policy state of study %d: %w", studyID, err)
	}
	k := u64(studyID)
	v := b.Get(k)
	if v == nil {
		return nil, nil
	}
	payload, err := unseal(fmt.Sprintf("policy state of study %d", studyID), bucketPolicyState, k, v)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), payload...), nil // payload points into the mmap
}

// PutPolicyState saves the policy's state for a study; an empty state deletes it.
// The study must exist.
func (tx *Tx) PutPolicyState(studyID uint64, state []byte) error {
	if err := tx.mustExist(bucketStudies, "study", studyID); err != nil {
		return fmt.Errorf("put policy state: %w", err)
	}
	b, err := tx.bucket(bucketPolicyState)
	if err != nil {
		return fmt.Errorf("put policy state of study %d: %w", studyID, err)
	}
	if len(state) == 0 {
		err = b.Delete(u64(studyID))
	} else {
		// seal copies state: bbolt keeps the value slice until commit, and the caller
		// may reuse its buffer right away.
		k := u64(studyID)
		err = b.Put(k, seal(bucketPolicyState, k, state))
	}
	if err != nil {
		return fmt.Errorf("put policy state of study %d: %w", studyID, err)
	}
	return nil
}
