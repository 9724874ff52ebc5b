#!/bin/bash
# benches/catch-up.sh
#
# How long an empty node takes to join a group whose primary retired the start of its journal
# (docs/replication.md, "Catching up from a checkpoint"): a group of two with etcd on loopback;
# the primary takes COUNT transfers (default 8 M; memory for 1 M, the rest in its history
# store) with a checkpoint every 64 MiB of journal; then the second node starts empty, and the
# time until the primary streams to it is printed with what was sent. RATE may add
# `--catch-up-mib-per-second N`. Run from the repository root after `cargo build --release`;
# needs `etcd` (Debian's etcd-server). Figures: benches/results/2026-12-01-catch-up.md.
set -u
B=${CLEARLINE:-target/release/clearline}
G=${TMPDIR:-/tmp}/clearline-catch-up; rm -rf $G; mkdir -p $G
EP=$((24000 + RANDOM % 1000))
etcd --name=t --data-dir=$G/etcd --listen-client-urls=http://127.0.0.1:$EP --advertise-client-urls=http://127.0.0.1:$EP --listen-peer-urls=http://127.0.0.1:$((EP+1000)) --initial-advertise-peer-urls=http://127.0.0.1:$((EP+1000)) --initial-cluster=t=http://127.0.0.1:$((EP+1000)) > $G/etcd.log 2>&1 &
EPID=$!
sleep 1
CAPS="--transfers-max 1000000 --transfers-pending-max 100000 --accounts-max 100000 --account-balances-max 2000000 --orders-max 1000 --fills-max 1000 --ids-max 16777216 --segment-size 67108864 --checkpoint-interval-mib 64 ${RATE:-}"
start() { $B start --data $G/n$1 --addr 127.0.0.1:$((EP+100+$1)) $CAPS --etcd http://127.0.0.1:$EP --node-id $1 --peer-addr 127.0.0.1:$((EP+200+$1)) --group c --group-size 2 --ack-backups 0 > $G/n$1.log 2>&1 & echo $!; }
P1=$(start 1)
for i in $(seq 1 100); do grep -q 'primary of epoch' $G/n1.log && break; sleep 0.1; done
$B benchmark --addr 127.0.0.1:$((EP+101)) --transfer-count ${COUNT:-8000000} --account-count 10000 --no-progress --no-sample-lookup 2>&1 | grep -E "throughput|error"
sleep 3
ls $G/n1/journal | head; du -sh $G/n1/journal $G/n1/history
T0=$(date +%s.%N)
P2=$(start 2)
for i in $(seq 1 6000); do grep -q "backup 2 follows" $G/n1.log && break; kill -0 $P2 2>/dev/null || break; sleep 0.05; done
T1=$(date +%s.%N)
echo "joined in $(echo "$T1 - $T0" | bc) s"
grep -E "backup 2|sent backup" $G/n1.log
grep -E "catch|installed|recovered" $G/n2.log
du -sh $G/n2/journal $G/n2/history
kill -9 $P1 $P2 2>/dev/null; kill $EPID; wait 2>/dev/null
