"""Latency and throughput of TigerBeetle's Python client (tigerbeetle==0.17.8) against clearline.

Usage: python bench.py PORT [--single N] [--batches N] [--id-base N]

Single: N create_transfers calls of one transfer each, one after another; prints the
latency distribution of the calls. Batched: N calls of 8,189 transfers each; prints
transfers per second over the calls and the per-call latency. Lists are built before the
clock starts, so only the client call (encode, send, server, reply, decode) is timed.
Results go to benches/results/2026-11-29-tigerbeetle-client.md.
"""

import argparse
import statistics
import time

import tigerbeetle as tb

LEDGER = 900
CODE = 1


def percentile(sorted_values, fraction):
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def describe(name, seconds):
    values = sorted(seconds)
    micros = [value * 1e6 for value in values]
    return (f"{name}: n {len(values)}, p50 {percentile(micros, 0.5):.0f} us, "
            f"p99 {percentile(micros, 0.99):.0f} us, max {micros[-1]:.0f} us, "
            f"mean {statistics.fmean(micros):.0f} us")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--single", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--id-base", type=int, default=10**15)
    args = parser.parse_args()
    base = args.id_base
    with tb.ClientSync(cluster_id=0, replica_addresses=str(args.port)) as client:
        debit, credit = base + 1, base + 2
        results = client.create_accounts([tb.Account(id=debit, ledger=LEDGER, code=CODE),
                                          tb.Account(id=credit, ledger=LEDGER, code=CODE)])
        assert all(r.status == tb.CreateAccountStatus.CREATED for r in results), results
        next_id = base + 1000

        def transfer(id):
            return tb.Transfer(id=id, debit_account_id=debit, credit_account_id=credit,
                               amount=1, ledger=LEDGER, code=CODE)

        latencies = []
        for _ in range(args.single):
            batch = [transfer(next_id)]
            next_id += 1
            started = time.perf_counter()
            results = client.create_transfers(batch)
            latencies.append(time.perf_counter() - started)
            assert results[0].status == tb.CreateTransferStatus.CREATED, results
        print(describe("single transfer per call", latencies), flush=True)

        batches = []
        for _ in range(args.batches):
            batches.append([transfer(next_id + i) for i in range(8189)])
            next_id += 8189
        latencies = []
        replies = []
        started_all = time.perf_counter()
        for batch in batches:
            started = time.perf_counter()
            replies.append(client.create_transfers(batch))
            latencies.append(time.perf_counter() - started)
        elapsed = time.perf_counter() - started_all
        for results in replies:
            assert len(results) == 8189
            assert all(r.status == tb.CreateTransferStatus.CREATED for r in results)
        print(describe("8,189 transfers per call", latencies), flush=True)
        print(f"batched throughput: {args.batches * 8189 / elapsed:,.0f} transfers/s "
              f"({args.batches} calls in {elapsed:.2f} s)", flush=True)


if __name__ == "__main__":
    main()
