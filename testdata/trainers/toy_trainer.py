#!/usr/bin/env python3
"""A second trainer that speaks the worker's protocol (docs/train-protocol.md), standard
library only. It trains nothing: each domain's loss follows a closed form of the mixture and
the step, so a test can check that the worker passed every flag and carried every point.

    ce_d(step) = 2 + 3 / (1 + step / 10) + 0.5 * (1 - w_d) ** 2
    train_loss = sum_d w_d * ce_d,  mean_ce = mean_d ce_d

It reads the data folder's meta.json as the contract says (an unknown domain is bad_data,
exit 3), writes a warning event, checkpoints to --checkpoint-dir and resumes from it, and on
SIGTERM writes a stopped done event and exits 143.
"""
import argparse
import json
import os
import signal
import sys
import time

TOKENS_PER_STEP = 512
PARAMS = 4096


def emit(event, **fields):
    rec = {"v": 1, "event": event, "time": time.time()}
    rec.update(fields)
    sys.stdout.write(json.dumps(rec) + "\n")
    sys.stdout.flush()


def fail(cls, code, message):
    emit("error", **{"class": cls, "message": message, "exit_code": code, "step": None})
    sys.exit(code)


def ce(weight, step):
    return 2 + 3 / (1 + step / 10) + 0.5 * (1 - weight) ** 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--domains", required=True)
    p.add_argument("--mixture", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", default="")
    p.add_argument("--checkpoint-dir", default="")
    p.add_argument("--step-seconds", type=float, default=0.0)
    try:
        args = p.parse_args()
    except SystemExit:
        fail("bad_input", 2, "bad flags: " + " ".join(sys.argv[1:]))
    domains = args.domains.split(",")
    try:
        weights = [float(w) for w in args.mixture.split(",")]
    except ValueError:
        fail("bad_input", 2, "--mixture %r is not a list of numbers" % args.mixture)
    if len(weights) != len(domains) or abs(sum(weights) - 1) > 1e-6:
        fail("bad_input", 2, "--mixture %r does not fit --domains %r" % (args.mixture, args.domains))
    try:
        with open(os.path.join(args.data_dir, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        fail("bad_data", 3, "cannot read meta.json: %s" % e)
    known = meta.get("domains", {})
    for d in domains:
        if d not in known:
            fail("bad_data", 3, "unknown domain %r: meta.json lists %s" % (d, ", ".join(sorted(known))))

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    ckpt = os.path.join(args.checkpoint_dir, "toy.json") if args.checkpoint_dir else ""
    step = 0
    if ckpt and os.path.exists(ckpt):
        with open(ckpt) as f:
            step = json.load(f)["step"]
    resumed = step
    emit("start", step=step, resumed_from_step=resumed, config={
        "preset": args.scale or "toy", "params": PARAMS, "tokens_per_step": TOKENS_PER_STEP,
        "flops_per_step": 6.0 * PARAMS * TOKENS_PER_STEP, "device": "cpu", "world_size": 1,
        "domains": domains, "mixture": weights, "seed": args.seed, "trainer": "toy_trainer.py"})
    emit("warning", code="toy_trainer", message="this trainer trains nothing; its curves are a closed form")

    def evaluate(s):
        metrics = {d + "_ce": ce(w, s) for d, w in zip(domains, weights)}
        metrics["mean_ce"] = sum(ce(w, s) for w in weights) / len(weights)
        emit("eval", step=s, tokens=s * TOKENS_PER_STEP, train_loss=None if s == 0 else train_loss(s),
             metrics=metrics, wall_time_s=0.0)

    def train_loss(s):
        return sum(w * ce(w, s) for w in weights)

    def checkpoint(s):
        if ckpt:
            with open(ckpt + ".tmp", "w") as f:
                json.dump({"step": s}, f)
            os.replace(ckpt + ".tmp", ckpt)
            emit("checkpoint", step=s, tokens=s * TOKENS_PER_STEP, path=ckpt)

    if step == 0:
        evaluate(0)
    while step < args.steps:
        time.sleep(args.step_seconds)
        step += 1
        if step % args.eval_every == 0 or step == args.steps:
            emit("point", step=step, tokens=step * TOKENS_PER_STEP, train_loss=train_loss(step), lr=1e-3,
                 grad_norm=1.0, tokens_per_s=1e6, wall_time_s=0.0)
            evaluate(step)
        if stopping:
            checkpoint(step)
            emit("done", status="stopped", step=step, tokens=step * TOKENS_PER_STEP,
                 domain_sequences={d: 0 for d in domains})
            sys.exit(143)
    checkpoint(step)
    emit("done", status="completed", step=step, tokens=step * TOKENS_PER_STEP, domain_sequences={d: 0 for d in domains})


if __name__ == "__main__":
    main()
