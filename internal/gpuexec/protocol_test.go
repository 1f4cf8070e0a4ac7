package gpuexec

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

// Lines as train.py writes them (copied from a real CPU run).
var protocolSeeds = []string{
	`{"v":1,"event":"start","time":1795906248.183,"step":0,"resumed_from_step":0,"config":{"preset":"tiny","d_model":64,"params":127296,"tokens_per_step":1024,"flops_per_step":782106624,"domains":["prose","code","math"],"mixture":[0.5,0.3,0.2],"device":"cpu","world_size":1}}`,
	`{"v":1,"event":"eval","time":1795906248.454,"step":0,"tokens":0,"train_loss":null,"metrics":{"prose_ce":5.72,"code_ce":5.58,"math_ce":5.75,"mean_ce":5.68},"wall_time_s":1.94}`,
	`{"v":1,"event":"point","time":1795906249.158,"step":10,"tokens":10240,"train_loss":3.745,"lr":0.0029,"grad_norm":2.09,"tokens_per_s":14542.3,"wall_time_s":2.64}`,
	`{"v":1,"event":"point","step":11,"tokens":11264,"train_loss":null,"lr":0.0029,"tokens_per_s":1.0,"wall_time_s":2.7}`,
	`{"v":1,"event":"checkpoint","time":1795906260.952,"step":60,"tokens":61440,"path":"/tmp/ck1/ckpt.pt","wall_time_s":14.44}`,
	`{"v":1,"event":"done","time":1795906260.952,"status":"completed","step":60,"tokens":61440,"domain_sequences":{"prose":476,"code":296,"math":188},"wall_time_s":14.44}`,
	`{"v":1,"event":"error","time":1795906260.952,"class":"bad_data","message":"unknown domain 'x'","exit_code":3,"step":null}`,
	`{"v":1,"event":"error","class":"from_the_future","message":"m","exit_code":1,"step":12}`,
	`{"v":2,"event":"point","step":1}`,
	`{"v":1,"event":"point","step":-1,"train_loss":1}`,
	`{"v":1,"event":"eval","step":3,"metrics":{}}`,
	`{"v":1,"event":"done","step":3,"status":"maybe"}`,
	`not json`,
	`{"event":"point"}`,
	`[]`,
}

func TestParseLine(t *testing.T) {
	ev, err := ParseLine([]byte(protocolSeeds[0]))
	if err != nil || ev.Kind != KindStart || ev.Start.Params != 127296 || len(ev.Start.Mixture) != 3 || ev.Start.Device != "cpu" {
		t.Fatalf("start: %+v %v", ev, err)
	}
	ev, err = ParseLine([]byte(protocolSeeds[1]))
	if err != nil || ev.HasTrainLoss || ev.Metrics["mean_ce"] != 5.68 || ev.WallTime != 1.94 {
		t.Fatalf("eval: %+v %v", ev, err)
	}
	ev, err = ParseLine([]byte(protocolSeeds[2]))
	if err != nil || ev.Step != 10 || ev.Tokens != 10240 || ev.TrainLoss != 3.745 || ev.TokensPerSecond != 14542.3 {
		t.Fatalf("point: %+v %v", ev, err)
	}
	ev, err = ParseLine([]byte(protocolSeeds[3]))
	if err != nil || !math.IsNaN(ev.TrainLoss) {
		t.Fatalf("non-finite point: %+v %v", ev, err)
	}
	ev, err = ParseLine([]byte(protocolSeeds[5]))
	if err != nil || ev.Done.Status != "completed" || ev.Done.DomainSequences["code"] != 296 {
		t.Fatalf("done: %+v %v", ev, err)
	}
	ev, err = ParseLine([]byte(protocolSeeds[6]))
	if err != nil || ev.Error.Class != pb.FailureClass_FAILURE_CLASS_BAD_DATA || ev.Error.ExitCode != 3 || ev.Error.Step != -1 {
		t.Fatalf("error: %+v %v", ev, err)
	}
	ev, err = ParseLine([]byte(protocolSeeds[7]))
	if err != nil || ev.Error.Class != pb.FailureClass_FAILURE_CLASS_OTHER {
		t.Fatalf("unknown class: %+v %v", ev, err)
	}
	for _, bad := range protocolSeeds[8:] {
		if _, err := ParseLine([]byte(bad)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err %v", bad, err)
		}
	}
}

// warningSeeds: train.py's compile fallback, then lines a reader must refuse.
var warningSeeds = []string{
	`{"v":1,"event":"warning","time":1795906248.2,"code":"compile_fallback","message":"torch.compile failed (BackendCompilerFailed: inductor); running eager"}`,
	`{"v":1,"event":"warning","message":"no code"}`,
	`{"v":1,"event":"warning","code":"has space","message":"m"}`,
	`{"v":1,"event":"warning","code":"no_message"}`,
	`{"v":1,"event":"warning","code":"` + strings.Repeat("c", 65) + `","message":"m"}`,
}

func TestParseWarning(t *testing.T) {
	ev, err := ParseLine([]byte(warningSeeds[0]))
	if err != nil || ev.Kind != KindWarning || ev.Warning.Code != "compile_fallback" ||
		!strings.HasPrefix(ev.Warning.Message, "torch.compile failed") {
		t.Fatalf("warning: %+v %v", ev, err)
	}
	for _, bad := range warningSeeds[1:] {
		if _, err := ParseLine([]byte(bad)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err %v", bad, err)
		}
	}
	// A long message is cut at a character boundary, not refused.
	long := strings.Repeat("é", MaxWarningBytes)
	ev, err = ParseLine([]byte(`{"v":1,"event":"warning","code":"w","message":"` + long + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	if m := ev.Warning.Message; len(m) > MaxWarningBytes+len("…") || !utf8.ValidString(m) || !strings.HasSuffix(m, "é…") {
		t.Fatalf("long message cut to %d bytes, valid UTF-8 %v", len(m), utf8.ValidString(m))
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range append(slices.Clone(protocolSeeds), warningSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := ParseLine(line)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		switch ev.Kind {
		case KindStart:
			if ev.Start == nil {
				t.Fatal("start without info")
			}
		case KindDone:
			if ev.Done == nil {
				t.Fatal("done without info")
			}
		case KindError:
			if ev.Error == nil {
				t.Fatal("error without info")
			}
		case KindEval:
			if len(ev.Metrics) == 0 {
				t.Fatal("eval without metrics")
			}
		case KindWarning:
			if ev.Warning == nil || ev.Warning.Code == "" || len(ev.Warning.Message) > MaxWarningBytes+len("…") {
				t.Fatalf("warning %+v", ev.Warning)
			}
		case KindPoint, KindCheckpoint:
		default:
			t.Fatalf("unknown kind %q accepted", ev.Kind)
		}
		if ev.Kind != KindError && (ev.Step < 0 || ev.Tokens < 0) {
			t.Fatalf("negative step or tokens accepted: %+v", ev)
		}
	})
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{max: 8, fn: func(l []byte) { got = append(got, string(l)) }}
	for _, chunk := range []string{"ab", "c\nlonglonglong", "long\nx\r\n", "12345678\n", "123456789\n", "tail"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	w.flush()
	want := []string{"abc", "x", "12345678", "tail"}
	if len(got) != len(want) || w.dropped != 2 {
		t.Fatalf("lines %q dropped %d", got, w.dropped)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("lines %q, want %q", got, want)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 5}
	for _, s := range []string{"abc", "def", "g"} {
		_, _ = tb.Write([]byte(s))
	}
	if tb.String() != "cdefg" {
		t.Fatalf("tail %q", tb.String())
	}
	_, _ = tb.Write([]byte("0123456789"))
	if tb.String() != "56789" {
		t.Fatalf("tail %q", tb.String())
	}
}
