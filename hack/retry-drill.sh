#!/bin/bash
# Retry drill: 12 trials on one simulated worker with 2 slots, 40% of attempts crashing
# (injected), lease TTL 3 s, so heartbeats come every 500 ms during each 4 s attempt.
# Prints the trial states, attempts, injected crashes, lease expiries, and how often a
# heartbeat stopped a running attempt (a retry must never be).
# usage: hack/retry-drill.sh [BINDIR (bin)] [PORT (17470)]   after make build
set -u
bin=${1:-bin}; port=${2:-17470}; dir=$(mktemp -d)
trap "rm -rf $dir" EXIT
cat > $dir/spec.yaml <<SPEC
name: drill
domains: [{name: web}, {name: code}, {name: books}]
scales: [{name: large, params: 1.0e9, tokens_per_step: 65536}]
steps: [1000]
eval_every: 25
objective: {metric: mean_ce}
target: {scale: large, steps: 1000}
budget_flops: 1.0e30
max_parallel: 2
max_trials: 12
policy: random
seed: 11
SPEC
$bin/coordinator -listen 127.0.0.1:$port -http-listen 127.0.0.1:0 -db $dir/db -lease-ttl 3s >$dir/coord.log 2>&1 &
cpid=$!
sleep 1
$bin/worker -coordinator 127.0.0.1:$port -simulate synthetic -slots 2 -speedup 1000 -inject-faults 0.4:crash >$dir/worker.log 2>&1 &
wpid=$!
$bin/mixctl --addr 127.0.0.1:$port study create -f $dir/spec.yaml >/dev/null
$bin/mixctl --addr 127.0.0.1:$port study wait 1 --limit 5m >/dev/null
$bin/mixctl --addr 127.0.0.1:$port trials 1 -o json > $dir/trials.json
kill $wpid $cpid; wait 2>/dev/null
python3 - $dir <<PY
import json,sys,collections
d=sys.argv[1]
ts=json.load(open(d+'/trials.json')).get('trials',[])
st=collections.Counter(t['state'] for t in ts)
att=sum(int(t.get('attempt',0)) for t in ts)
hist=[h for t in ts for h in t.get('reasonHistory',t.get('reason_history',[]))]
crashes=sum('injected fault' in h for h in hist)
expired=sum('lease expired' in h for h in hist)
log=open(d+'/worker.log').read()
print(dict(st), 'attempts', att, 'injected crashes', crashes, 'lease expiries', expired,
      'heartbeat stops', log.count('coordinator asked to stop'))
PY
