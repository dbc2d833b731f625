#!/usr/bin/env bash
# Cost of polling many static secrets: K KV v2 secrets on one fresh OpenBao dev server, polled
# side by side in ONE window by a secretdrop sidecar for every K in KS and every interval in
# POLLS (and, for every K in AGENT_KS, by a `bao agent` with one template per secret and
# static_secret_render_interval = the interval). Prints each one's CPU over the window
# (utime+stime from /proc/PID/stat), CPU per minute, the polls per minute it should make, and
# its resident memory at the end (VmRSS from /proc/PID/status: the process's own pages).
# CPU per minute should follow requests per minute.
#
# Usage: scripts/bench-poll.sh [KS] [POLLS] [DUR]   (default 1000 5s,30s 60)
#   e.g. AGENT_KS=1,100 scripts/bench-poll.sh 1,100,1000 5s,30s,5m 660
# A 5m interval needs DUR >= 600 so that the window holds two polls of every secret.
# SECRETDROP_BIN picks the binary (default: the static build, made if missing).
# COUNT_MM=1 also counts each sidecar's mmap/munmap/brk/madvise/mremap calls with perf.
set -euo pipefail
cd "$(dirname "$0")/.."
KS=${1:-1000}; POLLS=${2:-5s,30s}; DUR=${3:-60}; AGENT_KS=${AGENT_KS:-}
IFS=, read -ra ks <<<"$KS"; IFS=, read -ra polls <<<"$POLLS"; IFS=, read -ra agent_ks <<<"$AGENT_KS"
source scripts/tools.sh >/dev/null
BIN=${SECRETDROP_BIN:-target/static/secretdrop}
[ -x "$BIN" ] || scripts/build-static.sh >/dev/null
W=$(mktemp -d /dev/shm/kbench.XXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
"$BAO_BIN" server -dev -dev-root-token-id=root -dev-listen-address=127.0.0.1:$PORT >$W/bao.log 2>&1 &
export VAULT_ADDR=http://127.0.0.1:$PORT VAULT_TOKEN=root
for i in $(seq 1 50); do "$BAO_BIN" status >/dev/null 2>&1 && break; sleep 0.2; done
kmax=$(printf '%s\n' "${ks[@]}" | sort -n | tail -1)
python3 - "$PORT" "$kmax" <<'PY'
import json, sys, urllib.request
port, k = sys.argv[1], int(sys.argv[2])
for i in range(k):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/secret/data/s{i}", data=json.dumps({"data": {"v": f"value-{i}"}}).encode(), headers={"X-Vault-Token": "root"}, method="POST")
    urllib.request.urlopen(req).read()
PY
"$BAO_BIN" token create -policy=root -field=token > $W/token

names=(); pids=()
for k in "${ks[@]}"; do
    {
        echo "apiVersion: secretdrop.dev/v1alpha1"; echo "kind: Config"
        echo "vault: {address: $VAULT_ADDR}"; echo "auth: {method: token, tokenFile: $W/token}"
        echo "objects:"
        for i in $(seq 0 $((k-1))); do echo "  - {objectName: s$i, secretPath: secret/data/s$i, secretKey: v}"; done
    } > $W/cfg-$k.yaml
    for p in "${polls[@]}"; do
        env -u VAULT_ADDR -u VAULT_TOKEN "$BIN" sidecar --config $W/cfg-$k.yaml --dir $W/sd-$k-$p \
            --poll-interval $p --log-level warn >$W/sd-$k-$p.log 2>&1 &
        names+=("secretdrop K=$k poll $p"); pids+=($!)
    done
done
for k in "${agent_ks[@]}"; do
    for p in "${polls[@]}"; do
        mkdir -p $W/ag-$k-$p
        {
            echo "vault { address = \"$VAULT_ADDR\" }"
            echo "auto_auth { method \"token_file\" { config = { token_file_path = \"$W/token\" } } }"
            echo "template_config { static_secret_render_interval = \"$p\" }"
            for i in $(seq 0 $((k-1))); do
                echo "template { destination = \"$W/ag-$k-$p/s$i\" contents = \"{{ with secret \\\"secret/data/s$i\\\" }}{{ .Data.data.v }}{{ end }}\" }"
            done
        } > $W/ag-$k-$p.hcl
        env -u VAULT_ADDR -u VAULT_TOKEN "$BAO_BIN" agent -log-level=warn -config=$W/ag-$k-$p.hcl >$W/ag-$k-$p.log 2>&1 &
        names+=("bao agent K=$k poll $p"); pids+=($!)
    done
done

# Every tool has rendered everything before the window opens.
settle=$((10 + kmax / 100))
sleep $settle
cpu() { awk -v t="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); print ($12+$13)*1000/t}' /proc/$1/stat; }
rss() { awk '/^VmRSS:/ {printf "%.1f", $2/1024}' /proc/$1/status; }
mm_pids=()
if [ "${COUNT_MM:-}" = 1 ]; then
    for i in "${!pids[@]}"; do
        case ${names[$i]} in secretdrop*) ;; *) continue ;; esac
        perf stat -x, -o $W/mm-$i.csv -e syscalls:sys_enter_mmap,syscalls:sys_enter_munmap,syscalls:sys_enter_brk,syscalls:sys_enter_madvise,syscalls:sys_enter_mremap -p ${pids[$i]} -- sleep $DUR &
        mm_pids+=($!)
    done
fi
declare -a c0
for i in "${!pids[@]}"; do c0[$i]=$(cpu ${pids[$i]}); done
sleep $DUR
[ ${#mm_pids[@]} -gt 0 ] && wait "${mm_pids[@]}"
echo "one OpenBao dev server; all of these ran side by side for one window of ${DUR} s (after ${settle} s to settle)"
printf '%-28s %12s %12s %12s %9s %s\n' tool "CPU ms" "CPU ms/min" "polls/min" "RSS MiB" "${COUNT_MM:+mmap/munmap/brk/madvise/mremap per s}"
for i in "${!pids[@]}"; do
    kill -0 ${pids[$i]} 2>/dev/null || { echo "${names[$i]}: exited early; its log:"; cat $W/*.log | tail -20; exit 1; }
    used=$(awk -v a="${c0[$i]}" -v b="$(cpu ${pids[$i]})" 'BEGIN{print b-a}')
    k=${names[$i]#*K=}; k=${k%% *}; p=${names[$i]##* }
    secs=$(python3 -c "import re,sys; v,u=re.fullmatch(r'(\d+)(ms|s|m|h)','$p').groups(); print(int(v)*{'ms':.001,'s':1,'m':60,'h':3600}[u])")
    mm=""
    if [ -f $W/mm-$i.csv ]; then
        mm=$(awk -F, -v d=$DUR '/syscalls/ {printf "%s%.1f", (n++ ? "/" : ""), $1/d}' $W/mm-$i.csv)
    fi
    printf '%-28s %12.0f %12.0f %12.1f %9s %s\n' "${names[$i]}" "$used" "$(awk -v u=$used -v d=$DUR 'BEGIN{print u*60/d}')" \
        "$(awk -v k=$k -v s=$secs 'BEGIN{print k*60/s}')" "$(rss ${pids[$i]})" "$mm"
done
