package gpuexec

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// TestParseLineRefusals pins the reason of every refusal, one line per check ParseLine makes.
func TestParseLineRefusals(t *testing.T) {
	many := func(n int, value string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = `"d` + strconv.Itoa(i) + `":` + value
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	for _, tc := range []struct{ line, want string }{
		{``, `not a JSON object`},
		{`   `, `not a JSON object`},
		{`{"v":1`, `unexpected end of JSON input`},
		{`{"v":"1","event":"point"}`, `json: cannot unmarshal string into Go struct field wire.v of type int`},
		{`{"event":"point","step":1}`, `no protocol version`},
		{`{"v":0,"event":"point","step":1}`, `protocol version 0, want 1`},
		{`{"v":1,"event":"nope","step":1}`, `unknown event type "nope"`},
		{`{"v":1,"step":1}`, `unknown event type ""`},
		{`{"v":1,"event":"start"}`, `start event without a non-negative step`},
		{`{"v":1,"event":"start","step":0,"tokens":-1}`, `start event with negative tokens`},
		{`{"v":1,"event":"start","step":0,"config":5}`, `start config: json: cannot unmarshal number into Go value of type gpuexec.wireConfig`},
		{`{"v":1,"event":"point","step":1,"tokens":-1,"train_loss":1}`, `point event with negative tokens`},
		{`{"v":1,"event":"point","step":1}`, `point event without train_loss`},
		{`{"v":1,"event":"point","step":1,"train_loss":"x"}`, `point event without train_loss`},
		{`{"v":1,"event":"eval","metrics":{"m":1}}`, `eval event without a non-negative step`},
		{`{"v":1,"event":"eval","step":1,"metrics":` + many(maxMetrics+1, "1") + `}`, `eval event with 1025 metrics`},
		{`{"v":1,"event":"eval","step":1,"metrics":{"":1}}`, `eval metric name of 0 bytes`},
		{`{"v":1,"event":"eval","step":1,"metrics":{"` + strings.Repeat("m", maxNameBytes+1) + `":1}}`, `eval metric name of 129 bytes`},
		{`{"v":1,"event":"eval","step":1,"metrics":{"m":1},"train_loss":"x"}`, `eval train_loss: json: cannot unmarshal string into Go value of type float64`},
		{`{"v":1,"event":"checkpoint","path":"p"}`, `checkpoint event without a non-negative step`},
		{`{"v":1,"event":"checkpoint","step":1}`, `checkpoint event without a path`},
		{`{"v":1,"event":"done","status":"completed"}`, `done event without a non-negative step`},
		{`{"v":1,"event":"done","step":1}`, `done event with status ""`},
		{`{"v":1,"event":"done","step":1,"status":"completed","domain_sequences":` + many(maxMetrics+1, "1") + `}`, `done event with 1025 domains`},
		{`{"v":1,"event":"error","exit_code":1}`, `error event without message or exit_code`},
		{`{"v":1,"event":"error","message":"m"}`, `error event without message or exit_code`},
		{`{"v":1,"event":"warning","code":"c","message":null}`, `warning event without message`},
	} {
		_, err := ParseLine([]byte(tc.line))
		if !errors.Is(err, ErrProtocol) || err.Error() != tc.want+": "+ErrProtocol.Error() {
			t.Errorf("%.80s: err %v, want %q", tc.line, err, tc.want)
		}
	}
}

// TestParseLineFields covers the optional fields of each kind.
func TestParseLineFields(t *testing.T) {
	ev, err := ParseLine([]byte(`{"v":1,"event":"start","step":5,"tokens":50,"resumed_from_step":5,"wall_time_s":3}`))
	if err != nil || ev.Start == nil || ev.Start.ResumedFromStep != 5 || ev.Start.Preset != "" || ev.Start.Config != nil ||
		ev.Step != 5 || ev.Tokens != 50 || ev.WallTime != 3 {
		t.Fatalf("start without config: %+v %+v %v", ev, ev.Start, err)
	}
	ev, err = ParseLine([]byte(`{"v":1,"event":"eval","step":4,"metrics":{"a_ce":null,"mean_ce":2},"train_loss":1.5}`))
	if err != nil || !math.IsNaN(ev.Metrics["a_ce"]) || ev.Metrics["mean_ce"] != 2 || !ev.HasTrainLoss || ev.TrainLoss != 1.5 {
		t.Fatalf("eval with train_loss: %+v %v", ev, err)
	}
	ev, err = ParseLine([]byte(`{"v":1,"event":"eval","step":4,"metrics":{"m":1}}`))
	if err != nil || ev.HasTrainLoss || ev.TrainLoss != 0 {
		t.Fatalf("eval without train_loss: %+v %v", ev, err)
	}
	ev, err = ParseLine([]byte(`{"v":1,"event":"point","step":2,"train_loss":1,"lr":0.1,"grad_norm":3}`))
	if err != nil || ev.LR != 0.1 || ev.GradNorm != 3 || ev.TokensPerSecond != 0 || ev.Tokens != 0 {
		t.Fatalf("point: %+v %v", ev, err)
	}
	ev, err = ParseLine([]byte(`{"v":1,"event":"checkpoint","step":7,"path":"/ck/ckpt.pt"}`))
	if err != nil || ev.CheckpointPath != "/ck/ckpt.pt" || ev.Step != 7 {
		t.Fatalf("checkpoint: %+v %v", ev, err)
	}
	ev, err = ParseLine([]byte(`{"v":1,"event":"done","step":9,"status":"stopped","peak_memory_mib":12.5}`))
	if err != nil || ev.Done.Status != "stopped" || ev.Done.PeakMemoryMiB != 12.5 {
		t.Fatalf("done: %+v %v", ev, err)
	}
	ev, err = ParseLine([]byte(`{"v":1,"event":"error","class":"oom","message":"m","exit_code":4,"step":-1}`))
	if err != nil || ev.Error.Class != pb.FailureClass_FAILURE_CLASS_OOM || ev.Error.Step != -1 || ev.Step != 0 {
		t.Fatalf("error: %+v %+v %v", ev, ev.Error, err)
	}
	ev, err = ParseLine([]byte(`{"v":1,"event":"error","message":"m","exit_code":1,"step":12}`))
	if err != nil || ev.Error.Step != 12 || ev.Error.Class != pb.FailureClass_FAILURE_CLASS_OTHER {
		t.Fatalf("error at a step: %+v %+v %v", ev, ev.Error, err)
	}
}
