package loadtest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mixopt/mixopt/internal/testutil"
)

// TestRunSurvivesKills: the load run kills the real coordinator binary with SIGKILL
// twice under load and restarts it on the same database and address; the study
// still completes, and every point the workers emitted for each succeeded trial is
// stored exactly once.
func TestRunSurvivesKills(t *testing.T) {
	binDir := t.TempDir()
	if err := testutil.GoBuild(binDir, nil, "github.com/mixopt/mixopt/cmd/coordinator"); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "coordinator")
	const workers, perWorker, points = 4, 3, 50
	res, err := Run(context.Background(), Config{CoordinatorBin: bin, Workers: workers, TrialsPerWorker: perWorker,
		PointsPerTrial: points, Policy: "random", TrialSeconds: 1, Dir: t.TempDir(), Timeout: 3 * time.Minute, Kills: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Kills != 2 || res.RestartMax <= 0 {
		t.Errorf("kills %d, longest restart %s: want 2 kills measured", res.Kills, res.RestartMax)
	}
	if res.Lost != 0 || res.Duplicated != 0 {
		t.Errorf("%d points lost, %d duplicated", res.Lost, res.Duplicated)
	}
	if want := int64(workers * perWorker * points); res.PointsStored < want {
		t.Errorf("%d points stored, want at least %d (every trial's curve)", res.PointsStored, want)
	}
}
