//! The filtered queries over the store, with the engine's exact semantics
//! (`engine/src/query.rs`, docs/ledger.md): `get_account_transfers`, `get_account_balances`
//! and `query_transfers`.
//!
//! Like the engine's, an invalid filter selects nothing (it is not an error), a zero field
//! does not filter, timestamp bounds are inclusive (0: unbounded), and `limit` caps the answer
//! after the other conditions, counted from the oldest end or, with `reversed`, the newest.
//! Settlement transfers are selected like client ones, as the engine does. Each query
//! appends to `out`; the caller applies any cap of its own (the engine's
//! `query_results_max`) through `limit`.
//!
//! Does not merge with the engine's memory: the caller asks the store for its part (at or
//! below the watermark) and concatenates.

use clearline_engine::Transfer;
use clearline_engine::{AccountBalance, AccountFilter, AccountFilterFlags, QueryFilter};

use crate::account_runs::{self, SIDE_CREDIT, SIDE_DEBIT};
use crate::blocks::{self, Block};
use crate::error::HistoryError;
use crate::records;
use crate::store::{History, ACCOUNT_RUNS, BALANCES, TRANSFERS};

/// The inclusive upper bound of a range whose `maximum` is 0 when unbounded.
fn upper(maximum: u64) -> u64 {
    if maximum == 0 {
        u64::MAX
    } else {
        maximum
    }
}

/// A range over a key space, forward or newest first.
fn ordered<'a>(
    range: impl DoubleEndedIterator<Item = fjall::Guard> + 'a,
    reversed: bool,
) -> Box<dyn Iterator<Item = fjall::Guard> + 'a> {
    if reversed {
        Box::new(range.rev())
    } else {
        Box::new(range)
    }
}

impl History {
    /// `get_account_transfers` over the store, with the engine's semantics (docs/ledger.md):
    /// the transfers that debit (`debits`) or credit (`credits`) `filter.account_id`, matching
    /// `user_data_128`, `user_data_64`, `user_data_32` and `code` where they are not 0, with
    /// `timestamp_min <= timestamp <= timestamp_max` (0: unbounded), oldest first or newest
    /// first (`reversed`), at most `limit`. An invalid filter selects nothing. Appends to
    /// `out`; the caller applies any cap of its own through `limit`.
    ///
    /// # Errors
    ///
    /// `Fjall` on a failed read; `Corrupt` if an account entry or a record it names is
    /// damaged. `out` may then hold part of the answer.
    pub fn account_transfers(
        &self,
        filter: &AccountFilter,
        out: &mut Vec<Transfer>,
    ) -> Result<(), HistoryError> {
        if !filter.is_valid() {
            return Ok(());
        }
        let account = filter.account_id;
        let minimum = filter.timestamp_min;
        let maximum = upper(filter.timestamp_max);
        let reversed = filter.flags().reversed();
        let sides =
            (filter.flags & (AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS)) as u8;
        let mut remaining = filter.limit as usize;
        let mut list = Vec::new();
        // Generations hold consecutive time spans (each from its name to the next one's): only
        // those that may hold `minimum..=maximum` are read, in the order of the answer.
        let generations = self.generations();
        let wanted = (0..generations.len()).filter(|&index| {
            generations[index] <= maximum
                && generations
                    .get(index + 1)
                    .is_none_or(|&next| next > minimum)
        });
        let wanted: Vec<u64> = if reversed {
            wanted.rev().map(|index| generations[index]).collect()
        } else {
            wanted.map(|index| generations[index]).collect()
        };
        // Entries of one account never overlap within a generation (see account_runs.rs), and
        // across generations only when a run was rebuilt after a crash, with the same
        // transfers; `boundary`, the last timestamp visited, makes sure no transfer is
        // returned twice.
        let mut boundary: Option<u64> = None;
        for generation in wanted {
            let key = |timestamp| account_runs::key(generation, account, timestamp);
            // An entry starting below `minimum` can still hold transfers at or above it: the
            // scan starts at the last entry starting at or below `minimum`.
            let low = match self.account_runs.range(key(0)..=key(minimum)).next_back() {
                Some(guard) => {
                    let key = guard.key().map_err(self.fjall_error(ACCOUNT_RUNS))?;
                    account_runs::key_parts(&key)?.2
                }
                None => minimum,
            };
            let range = self.account_runs.range(key(low)..=key(maximum));
            let entries = ordered(range, reversed);
            for guard in entries {
                let (key, value) = guard.into_inner().map_err(self.fjall_error(ACCOUNT_RUNS))?;
                let (key_generation, key_account, first_timestamp) = account_runs::key_parts(&key)?;
                if key_generation != generation || key_account != account {
                    return Err(HistoryError::Corrupt {
                        what: ACCOUNT_RUNS,
                        detail: format!(
                            "range of account {account} in generation {generation} met \
                             account {key_account} in generation {key_generation}"
                        ),
                    });
                }
                account_runs::decode_list(account, first_timestamp, &value, &mut list)?;
                let mut visit = |&(timestamp, side): &(u64, u8)| -> Result<bool, HistoryError> {
                    let fresh = match boundary {
                        None => true,
                        Some(boundary) if reversed => timestamp < boundary,
                        Some(boundary) => timestamp > boundary,
                    };
                    if !fresh || timestamp < minimum || timestamp > maximum {
                        return Ok(true);
                    }
                    boundary = Some(timestamp);
                    if side & sides == 0 {
                        return Ok(true);
                    }
                    let transfer = self.record(timestamp, ACCOUNT_RUNS)?;
                    let debits = transfer.debit_account_id == account;
                    let credits = transfer.credit_account_id == account;
                    if (side & SIDE_DEBIT != 0) != debits || (side & SIDE_CREDIT != 0) != credits {
                        return Err(HistoryError::Corrupt {
                            what: ACCOUNT_RUNS,
                            detail: format!(
                                "account {account}, timestamp {timestamp}: side {side} does not \
                                 match the record"
                            ),
                        });
                    }
                    if filter.fields_match(&transfer) {
                        out.push(transfer);
                        remaining -= 1;
                    }
                    Ok(remaining > 0)
                };
                let more = if reversed {
                    list.iter()
                        .rev()
                        .map(&mut visit)
                        .find(|more| !matches!(more, Ok(true)))
                } else {
                    list.iter()
                        .map(&mut visit)
                        .find(|more| !matches!(more, Ok(true)))
                };
                match more {
                    Some(Err(error)) => return Err(error),
                    Some(Ok(_)) => return Ok(()),
                    None => {}
                }
                if reversed && first_timestamp <= minimum {
                    break;
                }
            }
        }
        Ok(())
    }

    /// `get_account_balances` over the store, with the engine's semantics: the balance rows
    /// of `filter.account_id` whose transfers `get_account_transfers` selects with the same
    /// filter (side, `user_data_128`, `user_data_64`, `user_data_32`, `code`, timestamp range),
    /// oldest first or newest first (`reversed`), at most `limit`. Only accounts with
    /// `history` have rows; an invalid filter selects nothing. Each row's transfer is read
    /// from `transfers` by the row's timestamp. Appends to `out`.
    ///
    /// # Errors
    ///
    /// `Fjall` on a failed read; `Corrupt` if a row is damaged, or its transfer is missing or
    /// moves neither side of the account. `out` may then hold part of the answer.
    pub fn account_balances(
        &self,
        filter: &AccountFilter,
        out: &mut Vec<AccountBalance>,
    ) -> Result<(), HistoryError> {
        if !filter.is_valid() {
            return Ok(());
        }
        let account = filter.account_id;
        let (debits, credits) = (filter.flags().debits(), filter.flags().credits());
        let mut remaining = filter.limit as usize;
        let range = self.balances.range(
            records::balance_key(account, filter.timestamp_min)
                ..=records::balance_key(account, upper(filter.timestamp_max)),
        );
        for guard in ordered(range, filter.flags().reversed()) {
            let (key, value) = guard.into_inner().map_err(self.fjall_error(BALANCES))?;
            let (key_account, timestamp) = records::balance_key_parts(&key)?;
            if key_account != account {
                return Err(HistoryError::Corrupt {
                    what: BALANCES,
                    detail: format!("range of account {account} met account {key_account}"),
                });
            }
            let row = records::balance_row(account, timestamp, &value)?;
            let transfer = self.record(timestamp, BALANCES)?;
            let (debit, credit) = (
                transfer.debit_account_id == account,
                transfer.credit_account_id == account,
            );
            if !debit && !credit {
                return Err(HistoryError::Corrupt {
                    what: BALANCES,
                    detail: format!(
                        "account {account}, timestamp {timestamp}: the transfer there moves \
                         accounts {} and {}",
                        transfer.debit_account_id, transfer.credit_account_id
                    ),
                });
            }
            if ((debits && debit) || (credits && credit)) && filter.fields_match(&transfer) {
                out.push(row);
                remaining -= 1;
                if remaining == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    /// `query_transfers` over the store, with the engine's semantics: every transfer (client
    /// and settlement) matching `user_data_128`, `user_data_64`, `user_data_32`, `ledger` and
    /// `code` where they are not 0, with `timestamp_min <= timestamp <= timestamp_max` (0:
    /// unbounded), oldest first or newest first (`reversed`), at most `limit`. An invalid
    /// filter selects nothing. Scans `transfers` over the timestamp range in key order.
    /// Appends to `out`.
    ///
    /// # Errors
    ///
    /// `Fjall` on a failed read; `Corrupt` if a key or a record is damaged. `out` may then
    /// hold part of the answer.
    pub fn query_transfers(
        &self,
        filter: &QueryFilter,
        out: &mut Vec<Transfer>,
    ) -> Result<(), HistoryError> {
        if !filter.is_valid() {
            return Ok(());
        }
        let (minimum, maximum) = (filter.timestamp_min, upper(filter.timestamp_max));
        let reversed = filter.flags().reversed();
        let mut remaining = filter.limit as usize;
        // The block that holds `minimum` starts in its bucket, at or below it.
        let range = self
            .transfers
            .range(blocks::bucket_start(minimum).to_be_bytes()..=maximum.to_be_bytes());
        // Blocks never span buckets, but one bucket may hold blocks that overlap (blocks.rs):
        // the transfers of each bucket are gathered, ordered, and each timestamp taken once.
        let mut bucket: Vec<Transfer> = Vec::with_capacity(blocks::BLOCK_RECORDS_MAX);
        let mut bucket_start = None;
        let mut take = |bucket: &mut Vec<Transfer>| {
            bucket.sort_unstable_by_key(|transfer| transfer.timestamp);
            bucket.dedup_by_key(|transfer| transfer.timestamp);
            if reversed {
                bucket.reverse();
            }
            for transfer in bucket.drain(..) {
                let timestamp = transfer.timestamp;
                if timestamp >= minimum
                    && timestamp <= maximum
                    && filter.selects_transfer(&transfer)
                {
                    out.push(transfer);
                    remaining -= 1;
                    if remaining == 0 {
                        return true;
                    }
                }
            }
            false
        };
        for guard in ordered(range, reversed) {
            let (key, value) = guard.into_inner().map_err(self.fjall_error(TRANSFERS))?;
            let block = Block::decode(&key, &value)?;
            let start = Some(blocks::bucket_start(block.first()));
            if start != bucket_start {
                if take(&mut bucket) {
                    return Ok(());
                }
                bucket_start = start;
            }
            bucket.extend(block.transfers());
        }
        take(&mut bucket);
        Ok(())
    }
}
