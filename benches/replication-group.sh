#!/bin/bash
# benches/replication-group.sh NODES K MODE
#
# A fresh replication group on this machine (etcd on loopback and NODES nodes acknowledging
# on K backups; NODES=0: one plain node without etcd), one `clearline benchmark --addr`
# against it (MODE: throughput, batches of 8,189; latency, one transfer per request), then
# everything stopped. Run from the repository root after `cargo build --release`; needs
# `etcd` (Debian's etcd-server). Figures: benches/results/2026-12-01-replication.md.
set -u
N=$1; K=$2; MODE=$3
B=${CLEARLINE:-target/release/clearline}
G=${TMPDIR:-/tmp}/clearline-group-bench; rm -rf $G; mkdir -p $G
EP=$((23000 + RANDOM % 1000))
etcd --name=t --data-dir=$G/etcd --listen-client-urls=http://127.0.0.1:$EP --advertise-client-urls=http://127.0.0.1:$EP --listen-peer-urls=http://127.0.0.1:$((EP+1000)) --initial-advertise-peer-urls=http://127.0.0.1:$((EP+1000)) --initial-cluster=t=http://127.0.0.1:$((EP+1000)) > $G/etcd.log 2>&1 &
EPID=$!
sleep 1
CAPS="--transfers-max 4000000 --accounts-max 100000 --account-balances-max 8000000 --orders-max 1000 --fills-max 1000 --ids-max 16777216"
PIDS=""
if [ "$N" = 0 ]; then
  $B start --data $G/solo --addr 127.0.0.1:$((EP+101)) $CAPS > $G/solo.log 2>&1 &
  PIDS="$!"
else
  for n in $(seq 1 $N); do
    $B start --data $G/n$n --addr 127.0.0.1:$((EP+100+n)) $CAPS --etcd http://127.0.0.1:$EP --node-id $n --peer-addr 127.0.0.1:$((EP+200+n)) --group b --group-size $N --ack-backups $K > $G/n$n.log 2>&1 &
    PIDS="$PIDS $!"
  done
fi
for i in $(seq 1 300); do c=$(cat $G/*.log 2>/dev/null | grep -c 'listening on'); [ "$c" -ge $((N>0?N:1)) ] && break; sleep 0.1; done
sleep 2
ADDR=127.0.0.1:$((EP+101))
if [ "$MODE" = throughput ]; then
  OUT=$($B benchmark --addr $ADDR --transfer-count 4000000 --account-count 10000 --no-progress --no-sample-lookup 2>&1)
else
  OUT=$($B benchmark --addr $ADDR --transfer-count 20000 --transfer-batch-count 1 --account-count 10000 --no-progress --no-sample-lookup 2>&1)
fi
echo "$OUT" | grep -E "throughput|p50|p99 |error|clearline:" | sed "s/^/nodes=$N K=$K $MODE: /"
kill -9 $PIDS 2>/dev/null; kill $EPID; wait 2>/dev/null
