//! Keys and values of the key spaces keyed by id or by account and timestamp: `transfer_ids`,
//! `burned_ids`, `resolutions` and `balances` (docs/history.md, "The history store").
//!
//! All integers are big-endian, so byte order is numeric order: an id key sorts by id, then by
//! namespace (0 client, 1 settlement); a balance key sorts by account, then by timestamp.
//!
//! Decoding checks every length and every byte with a meaning (a namespace, a status) and
//! reports anything else as `Corrupt`, never a panic.

use clearline_engine::AccountBalance;

use crate::error::HistoryError;
use crate::run::resolution_status_valid;

/// Bytes of a `transfer_ids` or `resolutions` key: id (16), namespace (1).
pub(crate) const ID_KEY_SIZE: usize = 17;
/// Bytes of a `balances` key: account (16), timestamp (8).
pub(crate) const BALANCE_KEY_SIZE: usize = 24;
/// Bytes of a `balances` value: debits pending, debits posted, credits pending, credits
/// posted (16 each).
pub(crate) const BALANCE_VALUE_SIZE: usize = 64;
/// Bytes of a `resolutions` value: status (1), timestamp (8).
pub(crate) const RESOLUTION_VALUE_SIZE: usize = 9;

/// The namespace byte of client transfer ids (and burned ids).
const NAMESPACE_CLIENT: u8 = 0;
/// The namespace byte of settlement transfer ids.
const NAMESPACE_SETTLEMENT: u8 = 1;

fn corrupt(what: &'static str, detail: String) -> HistoryError {
    HistoryError::Corrupt { what, detail }
}

/// The key of `id` in the client or the settlement namespace.
pub(crate) fn id_key(id: u128, settlement: bool) -> [u8; ID_KEY_SIZE] {
    let mut key = [0u8; ID_KEY_SIZE];
    key[..16].copy_from_slice(&id.to_be_bytes());
    key[16] = if settlement {
        NAMESPACE_SETTLEMENT
    } else {
        NAMESPACE_CLIENT
    };
    key
}

/// A value that is one big-endian timestamp (`transfer_ids`, `burned_ids`).
///
/// # Errors
///
/// `Corrupt` (as `what`, naming `id`) if the value is not 8 bytes.
pub(crate) fn timestamp_value(
    what: &'static str,
    id: u128,
    value: &[u8],
) -> Result<u64, HistoryError> {
    match <[u8; 8]>::try_from(value) {
        Ok(bytes) => Ok(u64::from_be_bytes(bytes)),
        Err(_) => Err(corrupt(
            what,
            format!("id {id}: {} bytes, expected 8", value.len()),
        )),
    }
}

/// The `resolutions` value.
pub(crate) fn resolution_value(status: u8, timestamp: u64) -> [u8; RESOLUTION_VALUE_SIZE] {
    let mut value = [0u8; RESOLUTION_VALUE_SIZE];
    value[0] = status;
    value[1..].copy_from_slice(&timestamp.to_be_bytes());
    value
}

/// Decodes a `resolutions` value into `(status, timestamp)`.
///
/// # Errors
///
/// `Corrupt` if the value is not 9 bytes or its status is not 2, 3 or 4.
pub(crate) fn resolution_parts(id: u128, value: &[u8]) -> Result<(u8, u64), HistoryError> {
    let Ok(value) = <&[u8; RESOLUTION_VALUE_SIZE]>::try_from(value) else {
        return Err(corrupt(
            "resolutions",
            format!(
                "id {id}: {} bytes, expected {RESOLUTION_VALUE_SIZE}",
                value.len()
            ),
        ));
    };
    let status = value[0];
    if !resolution_status_valid(status) {
        return Err(corrupt(
            "resolutions",
            format!("id {id}: status {status}, expected 2, 3 or 4"),
        ));
    }
    let mut timestamp = [0u8; 8];
    timestamp.copy_from_slice(&value[1..]);
    Ok((status, u64::from_be_bytes(timestamp)))
}

/// The `balances` key of `account`'s row at `timestamp`.
pub(crate) fn balance_key(account: u128, timestamp: u64) -> [u8; BALANCE_KEY_SIZE] {
    let mut key = [0u8; BALANCE_KEY_SIZE];
    key[..16].copy_from_slice(&account.to_be_bytes());
    key[16..].copy_from_slice(&timestamp.to_be_bytes());
    key
}

/// Splits a stored `balances` key into account and timestamp.
///
/// # Errors
///
/// `Corrupt` if the key is not 24 bytes.
pub(crate) fn balance_key_parts(key: &[u8]) -> Result<(u128, u64), HistoryError> {
    let Ok(key) = <&[u8; BALANCE_KEY_SIZE]>::try_from(key) else {
        return Err(corrupt(
            "balances key",
            format!("{} bytes, expected {BALANCE_KEY_SIZE}", key.len()),
        ));
    };
    let mut account = [0u8; 16];
    account.copy_from_slice(&key[..16]);
    let mut timestamp = [0u8; 8];
    timestamp.copy_from_slice(&key[16..]);
    Ok((u128::from_be_bytes(account), u64::from_be_bytes(timestamp)))
}

/// The `balances` value of `row` (its timestamp is in the key).
pub(crate) fn balance_value(row: &AccountBalance) -> [u8; BALANCE_VALUE_SIZE] {
    let mut value = [0u8; BALANCE_VALUE_SIZE];
    let fields = [
        row.debits_pending,
        row.debits_posted,
        row.credits_pending,
        row.credits_posted,
    ];
    for (chunk, field) in value.chunks_exact_mut(16).zip(fields) {
        chunk.copy_from_slice(&field.to_be_bytes());
    }
    value
}

/// Decodes a `balances` value into the row at `timestamp`.
///
/// # Errors
///
/// `Corrupt` if the value is not 64 bytes.
pub(crate) fn balance_row(
    account: u128,
    timestamp: u64,
    value: &[u8],
) -> Result<AccountBalance, HistoryError> {
    if value.len() != BALANCE_VALUE_SIZE {
        return Err(corrupt(
            "balances",
            format!(
                "account {account}, timestamp {timestamp}: {} bytes, expected \
                 {BALANCE_VALUE_SIZE}",
                value.len()
            ),
        ));
    }
    let mut fields = [0u128; 4];
    for (field, chunk) in fields.iter_mut().zip(value.chunks_exact(16)) {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(chunk);
        *field = u128::from_be_bytes(bytes);
    }
    Ok(AccountBalance {
        debits_pending: fields[0],
        debits_posted: fields[1],
        credits_pending: fields[2],
        credits_posted: fields[3],
        timestamp,
        reserved: [0; 56],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_keys_sort_by_id_then_namespace() {
        let mut keys = [
            id_key(2, false),
            id_key(1, true),
            id_key(1 << 100, false),
            id_key(1, false),
            id_key(2, true),
        ];
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                id_key(1, false),
                id_key(1, true),
                id_key(2, false),
                id_key(2, true),
                id_key(1 << 100, false),
            ]
        );
        assert_eq!(id_key(0x0102, true)[14..], [1, 2, 1]);
    }

    #[test]
    fn values_round_trip() {
        for status in [2, 3, 4] {
            let value = resolution_value(status, 0x0102_0304);
            assert_eq!(value[0], status);
            assert_eq!(
                resolution_parts(5, &value).ok(),
                Some((status, 0x0102_0304))
            );
        }
        let row = AccountBalance {
            debits_pending: 1,
            debits_posted: u128::MAX,
            credits_pending: 3 << 64,
            credits_posted: 4,
            timestamp: 77,
            reserved: [0; 56],
        };
        let value = balance_value(&row);
        assert_eq!(value[15], 1);
        assert_eq!(balance_row(9, 77, &value).ok(), Some(row));
        assert_eq!(balance_key_parts(&balance_key(9, 77)).ok(), Some((9, 77)));
        assert_eq!(timestamp_value("x", 1, &7u64.to_be_bytes()).ok(), Some(7));
    }

    fn is_corrupt<T>(result: Result<T, HistoryError>) -> bool {
        result.is_err_and(|e| e.is_corruption())
    }

    #[test]
    fn damaged_values_are_corrupt_never_a_panic() {
        for status in [0, 1, 5, 0xFF] {
            assert!(is_corrupt(resolution_parts(
                1,
                &resolution_value(status, 1)
            )));
        }
        let value = resolution_value(2, 1);
        assert!(is_corrupt(resolution_parts(1, &value[..8])));
        assert!(is_corrupt(resolution_parts(1, &[2; 10])));
        let value = balance_value(&AccountBalance::default());
        assert!(is_corrupt(balance_row(1, 1, &value[..63])));
        assert!(is_corrupt(balance_row(1, 1, &[0; 65])));
        assert!(is_corrupt(balance_key_parts(&[0; 23])));
        assert!(is_corrupt(balance_key_parts(&[0; 25])));
        assert!(is_corrupt(timestamp_value("x", 1, &[0; 7])));
        assert!(is_corrupt(timestamp_value("x", 1, &[0; 9])));
    }
}
