#!/usr/bin/env bash
# Start (or stop) a one-node Slurm cluster on this machine, to try `specdyn sweep --slurm`
# without a cluster. Needs root and Debian/Ubuntu packages slurm-wlm and munge (installed here
# with apt when missing). Checked recipe: ../shared/docs/slurm-one-node.md.
#
#   scripts/slurm-one-node.sh start     # munged, slurmctld, slurmd; waits until the node is idle
#   scripts/slurm-one-node.sh stop      # stops what start started
#   scripts/slurm-one-node.sh status
set -euo pipefail

cmd=${1:-start}
state=/run/specdyn-slurm
host=$(hostname -s)

start() {
    if [ "$(id -u)" != 0 ]; then
        echo "error: starting Slurm needs root. Fix: run this script with sudo." >&2
        exit 1
    fi
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        echo "installing slurm-wlm and munge (apt)…" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
    mkdir -p "$state" /etc/munge /var/lib/munge /var/log/munge /run/munge /etc/slurm \
        /var/spool/slurmd /var/spool/slurmctld /var/log/slurm
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
    chmod 400 /etc/munge/munge.key
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- /usr/sbin/munged
    fi
    local cpus mem
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=specdyn
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmUser=root
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 1 60); do
        if sinfo -h -o "%T" 2>/dev/null | grep -qE "idle|mixed|allocated"; then
            echo "Slurm is up: node $host ($cpus CPUs, $mem MiB), partition debug" >&2
            return 0
        fi
        scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
        sleep 0.5
    done
    echo "error: the Slurm node did not become idle; see /var/log/slurm/*.log" >&2
    exit 1
}

stop() {
    for p in /run/slurmd.pid /run/slurmctld.pid; do
        [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
    done
    pkill -x munged 2>/dev/null || true
    echo "Slurm stopped" >&2
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) sinfo ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
