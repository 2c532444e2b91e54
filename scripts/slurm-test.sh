#!/usr/bin/env bash
# Runs `experiments reproduce` as a real Slurm job array on this machine: installs Debian's
# slurm-wlm (and munge) when missing, starts munged, slurmctld and slurmd on localhost with a
# throw-away configuration, submits a 3-task array of tiny Table III runs (2 seeds, 12 runs,
# `--tiny` budget on the embedded digits), merges the shards with --aggregate-only and checks
# the merged table and the event log. Needs root (apt, daemons) and a release build.
#
#   bash scripts/slurm-test.sh            # about a minute on 2 cores after the build
#   KEEP=1 bash scripts/slurm-test.sh     # leave the work directory for inspection
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BIN="$REPO/target/release/experiments"
WORK=$(mktemp -d /tmp/s4q-slurm.XXXXXX)
OUT="$WORK/out"
SWEEP="$OUT/embedded-s4d-16h-tiny"
STARTED_PIDS=()

log() { echo "[slurm-test] $*"; }
fail() { echo "[slurm-test] FAIL: $*" >&2; exit 1; }

cleanup() {
    # Stop only the daemons this script started, by their pid.
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    sleep 1
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || fail "needs root (installs packages, starts slurm daemons)"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge fonts-dejavu-core >/dev/null
fi
if [[ ! -x "$BIN" ]]; then
    log "building (release)"
    cargo build --release --workspace
fi

HOST=$(hostname -s)
CPUS=$(nproc)
mkdir -p "$WORK"/{state,spool,munge,log}

# munge: a fresh key and socket in the work directory, so a system munged is left alone.
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$WORK/munge/munge.key"
MUNGE_SOCKET="$WORK/munge/munge.socket"
munged --force --key-file="$WORK/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/log/munged.log" \
    --seed-file="$WORK/munge/seed"
for _ in $(seq 50); do [[ -s "$WORK/munge/munged.pid" ]] && break; sleep 0.1; done
STARTED_PIDS+=("$(cat "$WORK/munge/munged.pid")")

cat >"$WORK/slurm.conf" <<EOF
ClusterName=s4qtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SchedulerType=sched/builtin
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$WORK/slurm.conf"

log "starting slurmctld and slurmd on $HOST ($CPUS CPUs)"
slurmctld -f "$SLURM_CONF"
for _ in $(seq 50); do [[ -s "$WORK/slurmctld.pid" ]] && break; sleep 0.2; done
STARTED_PIDS+=("$(cat "$WORK/slurmctld.pid")")
slurmd -f "$SLURM_CONF"
for _ in $(seq 50); do [[ -s "$WORK/slurmd.pid" ]] && break; sleep 0.2; done
STARTED_PIDS+=("$(cat "$WORK/slurmd.pid")")
for _ in $(seq 60); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    [[ "$state" == idle* ]] && break
    sleep 1
done
[[ "$state" == idle* ]] || { cat "$WORK"/log/*.log >&2; fail "node not idle (state '$state')"; }
log "node $HOST is $state"

# The array: every task runs the same command; reproduce reads SLURM_ARRAY_TASK_ID/COUNT.
REPRO=(reproduce table3 --tiny --dataset embedded --seeds 2 --out "$OUT")
cat >"$WORK/array.sbatch" <<EOF
#!/bin/bash
#SBATCH --job-name=s4q-tiny
#SBATCH --array=0-2
#SBATCH --cpus-per-task=1
#SBATCH --output=$WORK/log/task-%a.out
cd "$REPO"
export RAYON_NUM_THREADS=1
"$BIN" ${REPRO[*]} --no-aggregate
EOF
started=$(date +%s)
log "sbatch --wait $WORK/array.sbatch"
if ! sbatch --wait "$WORK/array.sbatch"; then
    tail -n 30 "$WORK"/log/task-*.out >&2 || true
    fail "the array job failed"
fi
log "array finished in $(( $(date +%s) - started )) s"
for i in 0 1 2; do
    grep -q "shard $i/3:" "$WORK/log/task-$i.out" || { cat "$WORK/log/task-$i.out" >&2; fail "task $i did not report shard $i/3"; }
    grep "shard $i/3:" "$WORK/log/task-$i.out" | sed 's/^/[slurm-test]   /'
done

log "merging: experiments ${REPRO[*]} --aggregate-only"
"$BIN" "${REPRO[@]}" --aggregate-only >"$WORK/merged.md"
cat "$WORK/merged.md"

# Checks: all 12 runs done, each computed exactly once, by all three shards together; every
# row of the merged table has a number for both seeds.
grep -q "runs finished: 12 of 12" "$SWEEP/table3.md" || fail "not every run finished"
done_runs=$(grep -c '"event":"done"' "$SWEEP/sweep.jsonl" || true)
unique_done=$(grep '"event":"done"' "$SWEEP/sweep.jsonl" | grep -o '"run":"[^"]*"' | sort -u | wc -l)
[[ "$done_runs" == 12 && "$unique_done" == 12 ]] || fail "expected 12 runs computed once each, got $done_runs ($unique_done distinct)"
shards=$(grep '"event":"done"' "$SWEEP/sweep.jsonl" | grep -o '"shard":"[0-9]/3"' | sort -u | wc -l)
[[ "$shards" == 3 ]] || fail "expected runs from 3 shards, got $shards"
for row in "FP" "PTQ W4A6, Abar 8x8" "QAT W8A8" "QAT W4A6, Abar 16x16" "QAT W4A6, Abar 8x8" "QAT W4A6, Abar 6x6"; do
    line=$(grep -F "| $row |" "$SWEEP/table3.md") || fail "row '$row' missing"
    ours=$(echo "$line" | awk -F'|' '{print $4}')
    [[ "$ours" == *"±"* && "$ours" != *"n="* ]] || fail "row '$row' lacks a 2-seed mean ± std: '$ours'"
done
[[ -s "$SWEEP/table3-pareto.svg" ]] || fail "no Pareto plot"
log "PASS: 3-task Slurm array, 12 runs each computed once, merged Table III complete"
