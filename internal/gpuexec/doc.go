// Package gpuexec discovers GPUs, hands trials GPU sets, and launches and supervises
// scripts/train.py, turning its JSON-lines protocol (docs/train-protocol.md) into typed events.
//
// It never runs a shell: argv is built from a validated [TrainSpec], and the child runs in its
// own process group so that stopping it also stops torchrun's ranks and DataLoader workers.
//
// Typical worker use:
//
//	gpus, err := gpuexec.Discover(ctx, gpuexec.DiscoverOptions{Override: *gpusFlag})
//	alloc := gpuexec.NewAllocator(gpus, gpuexec.AllocatorOptions{})
//	set, err := alloc.Acquire(trialKey, gpuexec.Need{Count: 1, MinMemoryMiB: 40000})
//	defer alloc.Release(trialKey)
//	spec.GPUs = gpuexec.IDs(set)
//	run, err := gpuexec.Launch(ctx, spec, gpuexec.LaunchOptions{Stderr: logWriter})
//	for ev := range run.Events() { ... } // must be drained until closed
//	res := run.Wait()                     // res.Class, res.Err, res.StderrTail
//
// Cancelling ctx or calling [Run.Stop] stops the run in stages: SIGTERM to the group (train.py
// then checkpoints and exits 143), SIGKILL to the group after the grace period, and a bounded
// wait. [Run.Wait] reports how it ended as a [Class]; [Classify] holds the rules.
package gpuexec
