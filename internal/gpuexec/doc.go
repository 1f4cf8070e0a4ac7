// Package gpuexec discovers GPUs, probes the training interpreter, hands trials GPU sets, and
// launches and supervises the trainer — scripts/train.py, or a team's own through a
// [CommandTemplate] — turning its JSON-lines protocol (docs/train-protocol.md) into typed
// events.
//
// It never runs a shell: argv is built from a validated [TrainSpec]. The child runs in its
// own process group, and every process of a run carries [RunTokenEnv], so that stopping it
// also stops torchrun's ranks (each in a session of its own) and DataLoader workers.
//
// Typical worker use:
//
//	in, err := gpuexec.FindInterpreter(ctx, gpuexec.ProbeOptions{}) // or ProbeInterpreter
//	if err := in.RequireTorch(); err != nil { ... }
//	gpus, err := gpuexec.Discover(ctx, gpuexec.DiscoverOptions{Override: *gpusFlag})
//	alloc := gpuexec.NewAllocator(gpus, gpuexec.AllocatorOptions{})
//	set, err := alloc.Acquire(trialKey, gpuexec.Need{Count: 1, MinMemoryMiB: 40000})
//	spec.GPUs = gpuexec.IDs(set)
//	run, err := gpuexec.Launch(ctx, spec, gpuexec.LaunchOptions{Stderr: logWriter})
//	for ev := range run.Events() { ... } // must be drained until closed
//	res := run.Wait()                     // res.Class, res.Err, res.StderrTail
//	<-run.Gone()                          // no process of the run is left
//	alloc.Release(trialKey)
//
// Cancelling ctx or calling [Run.Stop] stops the run in stages: SIGTERM to the group (train.py
// then checkpoints and exits 143), SIGSTOP and SIGKILL to every process of the run after the
// grace period, and a bounded wait. [Run.Wait] reports how it ended as a [Class]; [Classify]
// holds the rules.
package gpuexec
