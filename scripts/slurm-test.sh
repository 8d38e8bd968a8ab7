#!/usr/bin/env bash
# Tests `hippo sweep --slurm` against a real one-node Slurm cluster started here (Debian's slurm-wlm and munge):
# writes and submits a job array for a small sweep, waits, merges the shard databases twice, and checks that
# every run is present exactly once and finished. Stops the daemons it started. Needs root (exit 77 otherwise).
# Usage: scripts/slurm-test.sh HIPPO_BINARY
set -euo pipefail
hippo=$(realpath "$1")
if [[ $(id -u) -ne 0 ]]; then echo "slurm test: SKIPPED: needs root to start slurmctld, slurmd and munged" >&2; exit 77; fi
start_time=$(date +%s)
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }
fi
scratch=$(mktemp -d /tmp/hippo-slurm.XXXXXX)
chmod 755 "$scratch"
host=$(hostname -s)
conf=$scratch/slurm.conf
munge_pid=""
stop() {
  for f in "$scratch/slurmd.pid" "$scratch/slurmctld.pid"; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null || true; done
  [[ -n "$munge_pid" ]] && kill "$munge_pid" 2>/dev/null || true
  sleep 1
  [[ -n "${KEEP_SLURM_SCRATCH:-}" ]] || rm -rf "$scratch"
}
trap stop EXIT

# Munge, the authentication daemon, on a private socket.
mkdir -p "$scratch/munge"
[[ -f /etc/munge/munge.key ]] || /usr/sbin/mungekey --create >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
chown munge:munge /etc/munge/munge.key "$scratch/munge" && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=$scratch/munge/munged.pid" 
  sleep 1
  munge_pid=$(cat "$scratch/munge/munged.pid" 2>/dev/null || true)
fi
munge -n | unmunge >/dev/null || { echo "FAIL: munge does not work"; exit 1; }

cat > "$conf" <<CONF
ClusterName=hippo-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
StateSaveLocation=$scratch/state
SlurmdSpoolDir=$scratch/spool
SlurmctldPidFile=$scratch/slurmctld.pid
SlurmdPidFile=$scratch/slurmd.pid
SlurmctldLogFile=$scratch/slurmctld.log
SlurmdLogFile=$scratch/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$(nproc) RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
mkdir -p "$scratch/state" "$scratch/spool"
export SLURM_CONF=$conf
slurmctld -f "$conf"
slurmd -f "$conf"
for i in $(seq 30); do sinfo -h -o %t 2>/dev/null | grep -q -E "idle|mix|alloc" && break; sleep 1; done
sinfo -h -o %t | grep -q -E "idle|mix|alloc" || { echo "FAIL: the Slurm node did not come up"; cat "$scratch"/*.log | tail -20; exit 1; }

# A small sweep, written and submitted as a job array of 3 tasks.
work=$scratch/work
mkdir -p "$work" && chmod 777 "$work"
cat > "$work/arr.yaml" <<'YAML'
name: slurm-array
fixed:
  task: associative_recall
  d_model: 8
  max_steps: 3
  associative_recall: {num_train: 32, num_test: 8}
grid:
  layer: [attention, s4d]
  seed: [0, 1, 2]
YAML
cd "$work"
"$hippo" sweep arr.yaml --slurm out --array-size 3 --max-parallel 2 --submit > submit.log
grep -q "Submitted batch job" submit.log || { echo "FAIL: sbatch did not accept the script"; cat submit.log; exit 1; }
for i in $(seq 120); do [[ -z "$(squeue -h 2>/dev/null)" ]] && break; sleep 1; done
[[ -z "$(squeue -h)" ]] || { echo "FAIL: jobs still queued after 120 s"; squeue; exit 1; }
ls out/shards/shard-*.db > /dev/null || { echo "FAIL: no shard database written"; cat out/logs/* 2>/dev/null | tail; exit 1; }
out/merge.sh "$work/merged.db" > merge1.log
before=$(sqlite3 merged.db "SELECT count(*), sum(status = 'finished'), count(DISTINCT config_hash) FROM runs")
metrics1=$(sqlite3 merged.db "SELECT count(*) FROM metrics")
out/merge.sh "$work/merged.db" > merge2.log   # merging twice changes nothing
after=$(sqlite3 merged.db "SELECT count(*), sum(status = 'finished'), count(DISTINCT config_hash) FROM runs")
metrics2=$(sqlite3 merged.db "SELECT count(*) FROM metrics")
echo "slurm test: $(ls out/shards/shard-*.db | wc -l) shards; merged runs|finished|distinct = $before; metrics $metrics1"
[[ "$before" == "6|6|6" ]] || { echo "FAIL: expected 6 distinct finished runs"; exit 1; }
[[ "$before" == "$after" && "$metrics1" == "$metrics2" ]] || { echo "FAIL: a second merge changed the database"; exit 1; }
echo "slurm test: wall time $(( $(date +%s) - start_time )) s"
echo "1 passed, 0 failed"
