//! End-to-end tests of `clearline start` over loopback: the real binary as a child process, the
//! blocking client and raw sockets, one module per topic.
//!
//! - `round_trip`: every ledger operation, pipelining, reply headers, restart, the repl.
//! - `crash`: SIGKILL under load, across checkpoints and segment retirements, restart, nothing
//!   acknowledged lost or applied twice.
//! - `checkpoint`: checkpoints bound recovery, retire segments (into `--archive`), and a damaged
//!   newest checkpoint falls back to the previous one.
//! - `bad_input`: every malformed frame gets its status or a close; others stay served.
//! - `replay_refusal`: start-up refuses a journal record it cannot apply, naming the record.
//! - `storage_full`: a full journal answers writes with `storage_full`, serves reads and
//!   survives a due expiry, before and after a restart.
//! - `limits`: connection, partial-frame, trickle and slow-reader limits.
//! - `journal_tools`: `clearline journal verify` and `inspect` on data and journal directories,
//!   and on directories without a journal.
//! - `exhaustion`: idle-socket, header-only and reply-memory attacks; others stay served.
//! - `matching`: markets, orders, book and fills over the wire, settlement transfers, replay;
//!   the repl's order statements.
//! - `history`: history mode keeps every transfer past its memory, across kill -9 (lookups,
//!   retries, posts of old pending transfers, an account's whole history).
//! - `paging`: one account's 1,000,000 transfers paged with `timestamp_min`/`timestamp_max`
//!   and `limit`, oldest and newest first: each exactly once, in order.
//! - `benchmark`: `benchmark --output/--plot` files and `benchmark compare` on two of them.
//! - `failover`: replication groups of three nodes and a real etcd: kill -9 of the primary
//!   under load (`CLEARLINE_FAILOVER_KILLS` times), a stopped backup, a primary stopped past its
//!   lease, etcd stopped, a backup killed while catching up, a partitioned primary's
//!   unacknowledged records dropped on its return.
//! - `state`: `get_state`'s hash follows writes, stays across reads, and reads the same after
//!   kill -9 and a restart, with and without history mode.
//!
//! Every child server is killed by its guard's `Drop`, every socket has a timeout and every
//! wait loop a deadline, so a failing test ends instead of hanging. Seeds can be replayed with
//! `CLEARLINE_E2E_SEED=N`.

mod bad_input;
mod benchmark;
mod checkpoint;
mod crash;
mod exhaustion;
mod failover;
mod history;
mod journal_tools;
mod limits;
mod matching;
mod order_history;
mod paging;
mod replay_refusal;
mod round_trip;
mod state;
mod storage_full;
mod support;
mod tigerbeetle;
