#!/bin/bash
# Network overhead of secure training with the parties as three OS processes on 127.0.0.1:
# `cryptonn authority serve` + `cryptonn client encrypt` + `cryptonn server train`, against
# `examples/train_lenet --mode secure` (authority in-process), same images, batch, seed.
# Runs ROUNDS alternating rounds and prints each run's step time and key wait per step.
#
#   cargo build --release --bin cryptonn --example train_lenet
#   bash docs/loopback_overhead.sh [IMAGES=512] [BATCH=16] [ROUNDS=3]
set -euo pipefail
N=${1:-512}; B=${2:-16}; ROUNDS=${3:-3}; SEED=3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/cryptonn; EX=$ROOT/target/release/examples/train_lenet
D=$(mktemp -d /tmp/cryptonn-overhead.XXXX)
trap 'kill $AP 2>/dev/null; rm -rf "$D"' EXIT
"$BIN" certs --out "$D/pki" --host 127.0.0.1 --host localhost >/dev/null
"$BIN" authority token --tokens "$D/tokens" --role client --name owner > "$D/client.token"
"$BIN" authority token --tokens "$D/tokens" --role server --name server-1 > "$D/server.token"
"$BIN" authority serve --listen 127.0.0.1:0 --state "$D/state" --tokens "$D/tokens" \
    --tls-cert "$D/pki/authority.pem" --tls-key "$D/pki/authority.key" > "$D/auth.out" 2>&1 &
AP=$!
for _ in $(seq 100); do grep -q "listening on" "$D/auth.out" && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening on //p' "$D/auth.out")
CONN=(--authority "https://$ADDR" --ca "$D/pki/ca.pem" --tls-name localhost)
OPTS=(--train-size "$N" --batch-size "$B" --seed "$SEED")
COMMON=(--epochs 1 --test-size 1000 --cache-dir "$ROOT/cache" --data "$ROOT/data")
# One label permutation (the data owner's) for both arms, so the weights can be compared.
"$BIN" client encrypt "${CONN[@]}" --token-file "$D/client.token" --data "$ROOT/data" \
    --out "$D/enc" --labels "$D/owner/labels" --trainer server-1 "${OPTS[@]}" >/dev/null
for r in $(seq "$ROUNDS"); do
    "$EX" --mode secure "${COMMON[@]}" "${OPTS[@]}" --labels "$D/owner/labels" \
        --authority-dir "$D/inproc-authority" --json "$D/in-$r.json" >/dev/null 2>&1
    "$BIN" server train "${CONN[@]}" --token-file "$D/server.token" --name server-1 \
        --data "$D/enc" --mnist "$ROOT/data" --cache-dir "$ROOT/cache" --epochs 1 \
        --test-size 1000 --labels "$D/owner/labels" "${OPTS[@]}" --json "$D/net-$r.json" \
        >/dev/null 2>&1
done
python3 - "$D" "$ROUNDS" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
step = {"in": [], "net": []}; key = {"in": [], "net": []}; sha = set()
for r in range(1, rounds + 1):
    for arm in ("in", "net"):
        j = json.load(open(f"{d}/{arm}-{r}.json"))
        steps = j["key_requests"] / 3
        step[arm].append(1e3 * sum(j["epoch_seconds"]) / steps)
        key[arm].append(1e3 * j["key_seconds"] / steps)
        sha.add(j["weights_sha256"])
        print(f"round {r} {arm:>3}: {step[arm][-1]:7.1f} ms/step, key wait {key[arm][-1]:6.1f} ms/step")
m = {a: statistics.median(step[a]) for a in step}; k = {a: statistics.median(key[a]) for a in key}
print(f"median step: in-process {m['in']:.1f} ms, three processes {m['net']:.1f} ms: "
      f"{100 * (m['net'] - m['in']) / m['in']:+.1f} %; key wait {k['in']:.1f} -> {k['net']:.1f} ms "
      f"({100 * (k['net'] - k['in']) / m['in']:+.1f} % of the step); weights identical: {len(sha) == 1}")
PY
