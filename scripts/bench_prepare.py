#!/usr/bin/env python3
"""Benchmark of scripts/prepare_data.py: generates a corpus of --size-mb MB of JSON lines
(decompressed size), as .jsonl.zst files nested in folders per domain like SlimPajama's, prepares
it with --workers processes, and prints throughput per core and peak memory.

    /usr/bin/python3 scripts/bench_prepare.py --size-mb 1024 --workers 2 [--tokenizer byte] [--keep DIR]

The generated documents are word salad with unique ids (a few hundred to a few thousand
characters each), so JSON parsing, hashing and tokenization run at realistic document sizes.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
WORDS = ("the of and a to in is was for on that with as by at from his her it an were are which this be "
         "had not or have one their also first new after who two has they been its but more other when "
         "time during over into years some only such city most where these between river music world "
         "school north south state war team house small great early later known family village").split()


def generate(root, size_mb, domains, files_per_domain, seed):
    """Writes about size_mb MB of JSON lines (uncompressed) as zstd files; returns the bytes."""
    r = random.Random(seed)
    # A pool of paragraphs reused with unique ids keeps generation much faster than preparation.
    pool = [" ".join(r.choice(WORDS) for _ in range(r.randint(50, 800))) for _ in range(2000)]
    per_file = size_mb * 1e6 / (len(domains) * files_per_domain)
    total, cctx = 0, zstandard.ZstdCompressor(level=1)
    for d in domains:
        for k in range(files_per_domain):
            path = os.path.join(root, d, "chunk%d" % (k % 3), "part-%05d.jsonl.zst" % k)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as raw, cctx.stream_writer(raw) as f:
                n, i = 0, 0
                while n < per_file:
                    line = ('{"text": "%s %d %s", "meta": {"source": "%s"}}\n'
                            % (d, k * 10_000_000 + i, pool[(i * 7919 + k) % len(pool)], d)).encode()
                    f.write(line)
                    n += len(line)
                    i += 1
                total += n
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mb", type=int, default=1024, help="corpus size, MB of JSON lines before compression")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--tokenizer", default="byte")
    p.add_argument("--domains", default="web,code,books")
    p.add_argument("--files-per-domain", type=int, default=8)
    p.add_argument("--chunk-mib", type=float, default=4.0)
    p.add_argument("--keep", default="", help="generate into (and leave) this folder; reused when it holds a corpus")
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="mixopt-bench-prepare-")
    try:
        src = args.keep or os.path.join(work, "src")
        domains = args.domains.split(",")
        t0 = time.time()
        marker = os.path.join(src, "bench.json")
        if os.path.exists(marker):
            with open(marker) as f:
                made = json.load(f)["bytes"]
        else:
            made = generate(src, args.size_mb, domains, args.files_per_domain, 0)
            with open(marker, "w") as f:
                json.dump({"bytes": made}, f)
        gen_s = time.time() - t0
        report = os.path.join(work, "report.json")
        cmd = [sys.executable, os.path.join(HERE, "prepare_data.py"), "--out-dir", os.path.join(work, "out"),
               "--tokenizer", args.tokenizer, "--workers", str(args.workers), "--chunk-mib", str(args.chunk_mib),
               "--report", report] + ["--domain=%s=%s" % (d, os.path.join(src, d)) for d in domains]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(report) as f:
            r = json.load(f)
        mb = r["input_bytes"] / 1e6
        print("corpus      %.0f MB of JSON lines in %d .jsonl.zst files (generated in %.0f s)"
              % (made / 1e6, len(domains) * args.files_per_domain, gen_s))
        print("tokenizer   %s, %d workers, %g MiB chunks" % (args.tokenizer, args.workers, args.chunk_mib))
        print("time        %.1f s" % r["seconds"])
        print("throughput  %.1f MB/s wall (%.2f M tokens/s) on %d workers; %.1f MB per CPU second (%.0f CPU s): "
              "the throughput of one dedicated core" % (mb / r["seconds"], r["tokens"] / r["seconds"] / 1e6,
                                                       args.workers, mb / r["cpu_seconds"], r["cpu_seconds"]))
        print("peak RSS    %.0f MiB main, %.0f MiB per worker" % (r["peak_rss_main_mib"], r["peak_rss_worker_mib"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
