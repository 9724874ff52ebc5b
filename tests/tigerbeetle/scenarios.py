"""Scenarios for TigerBeetle's official Python client (tigerbeetle==0.17.8) against clearline.

Run by tests/e2e/tigerbeetle.rs as `python scenarios.py SCENARIO PORT [CLUSTER]` against a
`clearline start --tigerbeetle-addr 127.0.0.1:PORT`. Every scenario asserts what the client
returns; expected ledger results follow the case table of TigerBeetle 0.17.8's semantics
(rows cited as "row N"). A scenario prints "ok SCENARIO" on success; anything else fails.
"""

import asyncio
import os
import sys
import time

import tigerbeetle as tb

AF = tb.AccountFlags
TF = tb.TransferFlags
CAS = tb.CreateAccountStatus
CTS = tb.CreateTransferStatus
LEDGER = 700
CODE = 10
MAX = 2**128 - 1


def account(id, flags=AF.NONE, ledger=LEDGER, code=CODE, **fields):
    return tb.Account(id=id, ledger=ledger, code=code, flags=flags, **fields)


def transfer(id, debit, credit, amount, flags=TF.NONE, ledger=LEDGER, code=CODE, **fields):
    return tb.Transfer(id=id, debit_account_id=debit, credit_account_id=credit, amount=amount,
                       ledger=ledger, code=code, flags=flags, **fields)


def resolve(id, amount, flags, pending_id):
    """A post or void of the pending transfer `pending_id`: every other field left zero."""
    return transfer(id, 0, 0, amount, flags, pending_id=pending_id, ledger=0, code=0)


def statuses(results):
    return [result.status for result in results]


def check(actual, expected, what):
    assert actual == expected, f"{what}: expected {expected!r}, got {actual!r}"


def balances(client, id):
    [found] = client.lookup_accounts([id])
    return [found.debits_pending, found.debits_posted, found.credits_pending,
            found.credits_posted]


def account_filter(id, flags, limit=100, **fields):
    values = dict(account_id=id, user_data_128=0, user_data_64=0, user_data_32=0, code=0,
                  timestamp_min=0, timestamp_max=0, limit=limit, flags=flags)
    values.update(fields)
    return tb.AccountFilter(**values)


def query_filter(limit=100, flags=tb.QueryFilterFlags.NONE, **fields):
    values = dict(user_data_128=0, user_data_64=0, user_data_32=0, ledger=0, code=0,
                  timestamp_min=0, timestamp_max=0, limit=limit, flags=flags)
    values.update(fields)
    return tb.QueryFilter(**values)


def client(port, cluster=0):
    return tb.ClientSync(cluster_id=cluster, replica_addresses=str(port))


def operations(port, cluster):
    """Every operation once, with the results the reference returns."""
    with client(port, cluster) as c:
        created = c.create_accounts([
            account(1, AF.HISTORY, user_data_128=11, user_data_64=12, user_data_32=13),
            account(2, AF.HISTORY),
            account(3, code=20),
        ])
        check(statuses(created), [CAS.CREATED] * 3, "create_accounts")
        assert all(result.timestamp > 0 for result in created)
        assert created[0].timestamp < created[1].timestamp < created[2].timestamp
        # Row 16: a plain transfer moves the amount.
        results = c.create_transfers([
            transfer(100, 1, 2, 15, user_data_128=7),
            transfer(101, 2, 1, 4, user_data_64=8),
            transfer(102, 1, 2, 1, ledger=0),
        ])
        check(statuses(results),
              [CTS.CREATED, CTS.CREATED, CTS.LEDGER_MUST_NOT_BE_ZERO], "create_transfers")
        check(balances(c, 1), [0, 15, 0, 4], "balances of 1")
        check(balances(c, 2), [0, 4, 0, 15], "balances of 2")
        # Empty calls reach the server and get a valid empty reply.
        check(c.create_transfers([]), [], "empty create_transfers")
        check(c.lookup_accounts([]), [], "empty lookup_accounts")
        # Lookups return the found objects only, in request order.
        found = c.lookup_accounts([3, 999, 1])
        check([a.id for a in found], [3, 1], "lookup_accounts ids")
        check((found[1].user_data_128, found[1].user_data_64, found[1].user_data_32),
              (11, 12, 13), "user data")
        check(found[1].timestamp, created[0].timestamp, "account timestamp")
        check([t.id for t in c.lookup_transfers([101, 102, 100])], [101, 100],
              "lookup_transfers")
        # Row 17: the failed transfer is not stored.
        check(c.lookup_transfers([102]), [], "failed transfer")
        debits_credits = tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS
        both = c.get_account_transfers(account_filter(1, debits_credits))
        check([t.id for t in both], [100, 101], "get_account_transfers")
        reversed_ = c.get_account_transfers(
            account_filter(1, debits_credits | tb.AccountFilterFlags.REVERSED))
        check([t.id for t in reversed_], [101, 100], "reversed")
        debits = c.get_account_transfers(account_filter(1, tb.AccountFilterFlags.DEBITS))
        check([t.id for t in debits], [100], "debits only")
        check([t.id for t in c.get_account_transfers(
            account_filter(1, debits_credits, user_data_64=8))], [101], "user data filter")
        # Row 69: an invalid filter gives an empty result, not an error.
        check(c.get_account_transfers(account_filter(1, tb.AccountFilterFlags.NONE)), [],
              "no debits nor credits")
        history = c.get_account_balances(account_filter(1, debits_credits))
        check([[b.debits_posted, b.credits_posted] for b in history], [[15, 0], [15, 4]],
              "get_account_balances")
        check(history[0].timestamp, results[0].timestamp, "balance timestamp")
        # Row 70: no history flag, no balances.
        check(c.get_account_balances(account_filter(3, debits_credits)), [],
              "balances without history")
        check([a.id for a in c.query_accounts(query_filter(code=20))], [3], "query_accounts")
        check([a.id for a in c.query_accounts(query_filter(user_data_128=11))], [1],
              "query_accounts by user data")
        check([a.id for a in c.query_accounts(query_filter(
            ledger=LEDGER, limit=2, flags=tb.QueryFilterFlags.REVERSED))], [3, 2],
              "query_accounts reversed, limited")
        check([t.id for t in c.query_transfers(query_filter(user_data_128=7))], [100],
              "query_transfers")
        check([t.id for t in c.query_transfers(query_filter(ledger=LEDGER))], [100, 101],
              "query_transfers by ledger")


def batch(port, cluster):
    """One request of 8,189 transfers, the most a TigerBeetle request holds."""
    count = 8189
    with client(port, cluster) as c:
        check(statuses(c.create_accounts([account(1), account(2)])), [CAS.CREATED] * 2,
              "accounts")
        transfers = [transfer(1000 + i, 1 + i % 2, 2 - i % 2, 1 + i) for i in range(count)]
        results = c.create_transfers(transfers)
        check(len(results), count, "result count")
        assert all(result.status == CTS.CREATED for result in results)
        stamps = [result.timestamp for result in results]
        assert stamps == sorted(stamps) and len(set(stamps)) == count, "timestamps increase"
        found = c.lookup_transfers([t.id for t in transfers])
        check(len(found), count, "lookups of the whole batch")
        check([t.amount for t in found], [1 + i for i in range(count)], "amounts")
        debits_1 = sum(1 + i for i in range(0, count, 2))
        credits_1 = sum(1 + i for i in range(1, count, 2))
        check(balances(c, 1), [0, debits_1, 0, credits_1], "balances")
        # The second batch resent whole: every transfer already exists.
        again = c.create_transfers(transfers)
        assert all(result.status == CTS.EXISTS for result in again)
        check([r.timestamp for r in again], stamps, "exists carries the original timestamp")


async def concurrent_calls(port, cluster):
    client = tb.ClientAsync(cluster_id=cluster, replica_addresses=str(port))
    try:
        check(statuses(await client.create_accounts([account(1), account(2)])),
              [CAS.CREATED] * 2, "accounts")
        calls = []
        for call in range(8):
            # Each call has its own transfers; the third of each call fails on purpose, so
            # results that landed in another call's slot would show.
            transfers = [transfer(10_000 + call * 10 + i, 1, 2, 1 + call) for i in range(call + 1)]
            if call >= 2:
                transfers[2] = transfer(10_000 + call * 10 + 2, 1, 1, 1)
            calls.append(client.create_transfers(transfers))
        replies = await asyncio.gather(*calls)
        for call, results in enumerate(replies):
            expected = [CTS.CREATED] * (call + 1)
            if call >= 2:
                expected[2] = CTS.ACCOUNTS_MUST_BE_DIFFERENT
            check(statuses(results), expected, f"call {call}")
        lookups = await asyncio.gather(*[client.lookup_accounts([id]) for id in (1, 2, 1, 2)])
        check([[a.id for a in found] for found in lookups], [[1], [2], [1], [2]],
              "merged lookups")
        queries = await asyncio.gather(*[
            client.query_transfers(query_filter(limit=limit)) for limit in (1, 2, 3)])
        check([len(found) for found in queries], [1, 2, 3], "merged queries")
    finally:
        await client.close()


def concurrent(port, cluster):
    """Concurrent calls that the client merges into one request of several batches."""
    asyncio.run(concurrent_calls(port, cluster))


def linked_two_phase(port, cluster):
    """Linked chains and two-phase transfers, against rows of the case table."""
    with client(port, cluster) as c:
        # Row 8: a chain left open at the end of the batch.
        results = c.create_accounts([account(11, AF.LINKED), account(12, AF.LINKED), account(13),
                                     account(14, AF.LINKED), account(15, AF.LINKED)])
        check(statuses(results), [CAS.CREATED] * 3 + [CAS.LINKED_EVENT_FAILED,
                                                      CAS.LINKED_EVENT_CHAIN_OPEN], "row 8")
        # Row 9.
        check(statuses(c.create_accounts([account(16, AF.LINKED)])),
              [CAS.LINKED_EVENT_CHAIN_OPEN], "row 9")
        check(statuses(c.create_accounts([
            account(1), account(2), account(3),
            account(4, AF.DEBITS_MUST_NOT_EXCEED_CREDITS)])), [CAS.CREATED] * 4, "accounts")
        # Row 32: an object created and rolled back inside the same chain.
        check(statuses(c.create_transfers([
            transfer(1, 1, 2, 5, TF.LINKED), transfer(1, 1, 2, 5, TF.LINKED),
            transfer(9, 1, 2, 5), transfer(1, 1, 2, 5)])),
            [CTS.LINKED_EVENT_FAILED, CTS.EXISTS, CTS.LINKED_EVENT_FAILED, CTS.CREATED],
            "row 32")
        # Row 31: resending a committed chain.
        check(statuses(c.create_transfers([transfer(20, 1, 2, 1, TF.LINKED),
                                           transfer(21, 1, 2, 1)])),
              [CTS.CREATED] * 2, "chain")
        check(statuses(c.create_transfers([transfer(20, 1, 2, 1, TF.LINKED),
                                           transfer(21, 1, 2, 1)])),
              [CTS.EXISTS, CTS.LINKED_EVENT_FAILED], "row 31")
        # Row 33: a failed chain is undone; the next event stands alone.
        check(statuses(c.create_accounts([account(5)])), [CAS.CREATED], "account 5")
        c.create_transfers([transfer(30, 5, 3, 20)])
        check(statuses(c.create_transfers([transfer(31, 3, 5, 15, TF.LINKED),
                                           transfer(32, 3, 5, 1, ledger=0),
                                           transfer(33, 3, 5, 15)])),
              [CTS.LINKED_EVENT_FAILED, CTS.LEDGER_MUST_NOT_BE_ZERO, CTS.CREATED], "row 33")
        check(c.lookup_transfers([31]), [], "row 33: the rolled-back transfer")
        # Row 36: post part of a pending transfer; the rest returns.
        before = balances(c, 1)
        check(statuses(c.create_transfers([transfer(40, 1, 2, 15, TF.PENDING, timeout=1000)])),
              [CTS.CREATED], "pending")
        check(balances(c, 1), [15, before[1], 0, before[3]], "pending reserves")
        check(statuses(c.create_transfers([resolve(41, 13, TF.POST_PENDING_TRANSFER, 40)])),
              [CTS.CREATED], "row 36: post")
        [posted] = c.lookup_transfers([41])
        check((posted.amount, posted.debit_account_id, posted.credit_account_id),
              (13, 1, 2), "row 36: stored post")
        check(balances(c, 1), [0, before[1] + 13, 0, before[3]], "row 36: balances")
        # Row 42: already posted. Row 40: void amounts of the pending transfer 50. Row 43: void
        # of a single-phase transfer; row 44: unknown pending id (its id is reused below).
        c.create_transfers([transfer(50, 1, 2, 15, TF.PENDING)])
        void = TF.VOID_PENDING_TRANSFER
        for id, amount, pending_id, expected, what in [
            (42, 0, 40, CTS.PENDING_TRANSFER_ALREADY_POSTED, "row 42"),
            (51, 16, 50, CTS.EXCEEDS_PENDING_TRANSFER_AMOUNT, "row 40: more"),
            (52, 14, 50, CTS.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT, "row 40: less"),
            (53, 15, 50, CTS.CREATED, "row 40: exact"),
            (60, 0, 20, CTS.PENDING_TRANSFER_NOT_PENDING, "row 43"),
            (61, 0, 103, CTS.PENDING_TRANSFER_NOT_FOUND, "row 44"),
        ]:
            check(statuses(c.create_transfers([resolve(id, amount, void, pending_id)])),
                  [expected], what)
        check(statuses(c.create_transfers([transfer(61, 1, 2, 1)])),
              [CTS.ID_ALREADY_FAILED], "row 44: reuse")
        # Row 20 and 21.
        check(statuses(c.create_transfers([transfer(70, 999, 2, 1)])),
              [CTS.DEBIT_ACCOUNT_NOT_FOUND], "row 20")
        check(statuses(c.create_accounts([account(6, ledger=LEDGER + 1)])), [CAS.CREATED], "6")
        check(statuses(c.create_transfers([transfer(71, 1, 6, 1, ledger=9)])),
              [CTS.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER], "row 21")
        # Row 30: one batch with the same id several ways.
        check(statuses(c.create_transfers([
            transfer(80, 1, 2, 5), transfer(80, 1, 2, 5), transfer(80, 1, 2, 6),
            transfer(80, 2, 1, 5), transfer(80, 1, 2, 5, TF.PENDING)])),
            [CTS.CREATED, CTS.EXISTS, CTS.EXISTS_WITH_DIFFERENT_AMOUNT,
             CTS.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID, CTS.EXISTS_WITH_DIFFERENT_FLAGS],
            "row 30")
        # Row 58 (first half): a limit flag refuses what would exceed it.
        c.create_transfers([transfer(90, 1, 4, 4)])
        check(statuses(c.create_transfers([transfer(91, 4, 1, 5)])),
              [CTS.EXCEEDS_CREDITS], "exceeds_credits")


def restart(port, cluster):
    """Acknowledged writes survive a server kill; the same client carries on afterwards."""
    c = client(port, cluster)
    check(statuses(c.create_accounts([account(1), account(2)])), [CAS.CREATED] * 2, "accounts")
    acknowledged = []
    for i in range(20):
        results = c.create_transfers([transfer(100 + i, 1, 2, 1 + i)])
        check(statuses(results), [CTS.CREATED], "transfer")
        acknowledged.append(100 + i)
    print("restart now", flush=True)
    line = sys.stdin.readline()
    assert line.strip() == "restarted", line
    # The same client object: it reconnects and its session is resumed.
    found = c.lookup_transfers(acknowledged)
    check([t.id for t in found], acknowledged, "acknowledged transfers after the restart")
    check(balances(c, 1), [0, sum(1 + i for i in range(20)), 0, 0], "balances after restart")
    check(statuses(c.create_transfers([transfer(200, 2, 1, 7)])), [CTS.CREATED],
          "a write after the restart")
    c.close()
    with client(port, cluster) as fresh:
        check(balances(fresh, 1), [0, sum(1 + i for i in range(20)), 0, 7], "a new client")


def eviction(port, cluster):
    """With one session allowed, a second client evicts the first, whose next call fails
    with the client's own eviction error."""
    first = client(port, cluster)
    check(statuses(first.create_accounts([account(1)])), [CAS.CREATED], "first client")
    with client(port, cluster) as second:
        check(statuses(second.create_accounts([account(2)])), [CAS.CREATED], "second client")
        try:
            first.lookup_accounts([1])
        except tb.ClientEvictedError:
            pass
        else:
            raise AssertionError("the evicted client's call succeeded")
        check([a.id for a in second.lookup_accounts([1, 2])], [1, 2], "the second client")
    first.close()


def local_ports(port):
    """Local ports of established connections to `port`, from /proc/net/tcp."""
    ports = set()
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == "01" and int(remote.split(":")[1], 16) == port:
                ports.add(int(local.split(":")[1], 16))
    return ports


def ping(port, cluster):
    """An idle client stays connected through its pings (the server closes connections idle
    for 40 s in this test; the client pings every 30 s)."""
    idle_seconds = float(os.environ.get("IDLE_SECONDS", "50"))
    with client(port, cluster) as c:
        check(statuses(c.create_accounts([account(1)])), [CAS.CREATED], "account")
        before = local_ports(port)
        check(len(before), 1, "one connection")
        time.sleep(idle_seconds)
        check(local_ports(port), before, "the same connection after idling")
        check([a.id for a in c.lookup_accounts([1])], [1], "a call after idling")
        check(local_ports(port), before, "the same connection after the call")


SCENARIOS = {
    "operations": operations,
    "batch": batch,
    "concurrent": concurrent,
    "linked_two_phase": linked_two_phase,
    "restart": restart,
    "eviction": eviction,
    "ping": ping,
}

if __name__ == "__main__":
    name, port = sys.argv[1], int(sys.argv[2])
    cluster = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    SCENARIOS[name](port, cluster)
    print(f"ok {name}", flush=True)
