#!/usr/bin/env bash
# Cost of polling many static secrets: K KV v2 secrets on a fresh OpenBao dev server, polled by
# two secretdrop sidecars side by side (intervals A and B) for DUR seconds; prints each one's CPU
# (utime+stime from /proc). CPU per minute should follow requests per minute.
# Usage: scripts/bench-poll.sh [K] [POLL_A] [POLL_B] [DUR] (default 1000 5s 30s 60);
# SECRETDROP_BIN picks the binary (default: the static build, made if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:-1000}; PA=${2:-5s}; PB=${3:-30s}; DUR=${4:-60}
source scripts/tools.sh >/dev/null
BIN=${SECRETDROP_BIN:-target/static/secretdrop}
[ -x "$BIN" ] || scripts/build-static.sh >/dev/null
W=$(mktemp -d /dev/shm/kbench.XXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
"$BAO_BIN" server -dev -dev-root-token-id=root -dev-listen-address=127.0.0.1:$PORT >$W/bao.log 2>&1 &
BAOPID=$!
export VAULT_ADDR=http://127.0.0.1:$PORT VAULT_TOKEN=root
for i in $(seq 1 50); do "$BAO_BIN" status >/dev/null 2>&1 && break; sleep 0.2; done
python3 - "$PORT" "$K" <<'PY'
import json, sys, urllib.request
port, k = sys.argv[1], int(sys.argv[2])
for i in range(k):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/secret/data/s{i}", data=json.dumps({"data": {"v": f"value-{i}"}}).encode(), headers={"X-Vault-Token": "root"}, method="POST")
    urllib.request.urlopen(req).read()
PY
"$BAO_BIN" token create -policy=root -field=token > $W/token
{
  echo "apiVersion: secretdrop.dev/v1alpha1"; echo "kind: Config"
  echo "vault: {address: $VAULT_ADDR}"; echo "auth: {method: token, tokenFile: $W/token}"
  echo "objects:"
  for i in $(seq 0 $((K-1))); do echo "  - {objectName: s$i, secretPath: secret/data/s$i, secretKey: v}"; done
} > $W/cfg.yaml
env -u VAULT_ADDR -u VAULT_TOKEN "$BIN" sidecar --config $W/cfg.yaml --dir $W/a --poll-interval $PA --log-level warn >$W/a.log 2>&1 &
A=$!
env -u VAULT_ADDR -u VAULT_TOKEN "$BIN" sidecar --config $W/cfg.yaml --dir $W/b --poll-interval $PB --log-level warn >$W/b.log 2>&1 &
B=$!
sleep 3
cpu() { awk '{print ($14+$15)*10}' /proc/$1/stat; }
a0=$(cpu $A); b0=$(cpu $B)
sleep $DUR
a1=$(cpu $A); b1=$(cpu $B)
echo "K=$K poll $PA: $((a1-a0)) ms CPU in ${DUR}s; poll $PB: $((b1-b0)) ms"
