package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	pb "github.com/mixopt/mixopt/proto/mixopt/v1"
)

func TestFormatStoreHealth(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	ms := func(d time.Duration) int64 { return now.Add(-d).UnixMilli() }
	for _, tc := range []struct {
		h    *pb.GetStoreHealthResponse
		want string
	}{
		{&pb.GetStoreHealthResponse{LastWriteOkUnixMs: ms(time.Second)}, "store: writes ok"},
		{&pb.GetStoreHealthResponse{WriteFailures: 3, LastWriteError: "no space left on device",
			LastWriteErrorUnixMs: ms(12 * time.Second), LastWriteOkUnixMs: ms(5 * time.Second)},
			"store: 3 failed writes, last 12s ago: no space left on device; writes ok again since 5s ago"},
		{&pb.GetStoreHealthResponse{WriteFailures: 1, LastWriteError: "input/output error",
			LastWriteErrorUnixMs: ms(time.Second), LastWriteOkUnixMs: ms(time.Minute)},
			"store: 1 failed writes, last 1s ago: input/output error; FAILING: no write has succeeded since (workers are retrying)"},
	} {
		if got := formatStoreHealth(tc.h, now); got != tc.want {
			t.Errorf("formatStoreHealth(%v)\n got %q\nwant %q", tc.h, got, tc.want)
		}
	}
}

func TestPrintVerify(t *testing.T) {
	var out bytes.Buffer
	printVerify(&out, &pb.VerifyStoreResponse{Records: 10, DurationMs: 1500})
	if got := out.String(); got != "store ok: 10 records checked in 1.5s\n" {
		t.Errorf("clean store: %q", got)
	}
	out.Reset()
	printVerify(&out, &pb.VerifyStoreResponse{Records: 10, Problems: []string{"trials/7: checksum mismatch"}})
	if got := out.String(); !strings.Contains(got, "DAMAGED") || !strings.Contains(got, "  trials/7: checksum mismatch\n") {
		t.Errorf("damaged store: %q", got)
	}
}
