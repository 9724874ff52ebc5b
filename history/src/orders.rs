//! The matching side's records in the store: finished orders and fills (docs/history.md, "The
//! history store"), their keys, their ingest and their reads.
//!
//! | key space | key (big-endian) | value |
//! |---|---|---|
//! | `orders` | id (16) | the 128-byte order, finish timestamp (8) |
//! | `fills` | sequence (8) | the 128-byte fill |
//! | `fill_markets` | market (4), timestamp (8), sequence (8) | empty |
//! | `fill_orders` | order id (16), timestamp (8), sequence (8) | empty |
//!
//! A fill is indexed under its market and under both its orders (taker and maker), so that
//! `get_fills` of a market or of an order over a time range is one range scan in either
//! direction. An order id is used once, so an order's key is its id alone.
//!
//! Unlike transfers, these records are written again when a run repeats them (an order or a
//! fill at or below the durable watermark is not skipped): the same key gets the same value,
//! and an engine restarted from a checkpoint of an earlier version hands the store every
//! finished order and fill it holds, whatever the watermark.

use clearline_engine::{Fill, FillFilter, Order};

use crate::error::HistoryError;
use crate::run::FinishedOrder;
use crate::store::History;

pub(crate) const ORDERS: &str = "orders";
pub(crate) const FILLS: &str = "fills";
pub(crate) const FILL_MARKETS: &str = "fill_markets";
pub(crate) const FILL_ORDERS: &str = "fill_orders";

/// Bytes of an `orders` value: the order (128), its finish timestamp (8).
const ORDER_VALUE_SIZE: usize = Order::SIZE + 8;
/// Bytes of a `fill_markets` key.
const MARKET_KEY_SIZE: usize = 20;
/// Bytes of a `fill_orders` key.
const ORDER_KEY_SIZE: usize = 32;

pub(crate) fn order_value(finished: &FinishedOrder) -> [u8; ORDER_VALUE_SIZE] {
    let mut value = [0u8; ORDER_VALUE_SIZE];
    let mut record = [0u8; Order::SIZE];
    finished.order.encode(&mut record);
    value[..Order::SIZE].copy_from_slice(&record);
    value[Order::SIZE..].copy_from_slice(&finished.finished_at.to_be_bytes());
    value
}

pub(crate) fn fill_value(fill: &Fill) -> [u8; Fill::SIZE] {
    let mut value = [0u8; Fill::SIZE];
    fill.encode(&mut value);
    value
}

pub(crate) fn market_key(market: u32, timestamp: u64, sequence: u64) -> [u8; MARKET_KEY_SIZE] {
    let mut key = [0u8; MARKET_KEY_SIZE];
    key[..4].copy_from_slice(&market.to_be_bytes());
    key[4..12].copy_from_slice(&timestamp.to_be_bytes());
    key[12..].copy_from_slice(&sequence.to_be_bytes());
    key
}

pub(crate) fn order_key(order_id: u128, timestamp: u64, sequence: u64) -> [u8; ORDER_KEY_SIZE] {
    let mut key = [0u8; ORDER_KEY_SIZE];
    key[..16].copy_from_slice(&order_id.to_be_bytes());
    key[16..24].copy_from_slice(&timestamp.to_be_bytes());
    key[24..].copy_from_slice(&sequence.to_be_bytes());
    key
}

/// The sequence at the end of an index key.
fn key_sequence(what: &'static str, key: &[u8]) -> Result<u64, HistoryError> {
    let size = if what == FILL_MARKETS {
        MARKET_KEY_SIZE
    } else {
        ORDER_KEY_SIZE
    };
    match <[u8; 8]>::try_from(key.get(size - 8..).unwrap_or(&[])) {
        Ok(bytes) if key.len() == size => Ok(u64::from_be_bytes(bytes)),
        _ => Err(HistoryError::Corrupt {
            what,
            detail: format!("key of {} bytes, expected {size}", key.len()),
        }),
    }
}

impl History {
    /// The finished order `id` and the timestamp it finished at, if the store holds it.
    ///
    /// # Errors
    ///
    /// `Fjall` on a failed read; `Corrupt` if the value is damaged or holds another id.
    pub fn order(&self, id: u128) -> Result<Option<(Order, u64)>, HistoryError> {
        let Some(value) = self
            .orders
            .get(id.to_be_bytes())
            .map_err(self.fjall_error(ORDERS))?
        else {
            return Ok(None);
        };
        let Ok(value) = <&[u8; ORDER_VALUE_SIZE]>::try_from(&value[..]) else {
            return Err(HistoryError::Corrupt {
                what: ORDERS,
                detail: format!(
                    "order {id}: {} bytes, expected {ORDER_VALUE_SIZE}",
                    value.len()
                ),
            });
        };
        let mut record = [0u8; Order::SIZE];
        record.copy_from_slice(&value[..Order::SIZE]);
        let order = Order::decode(&record);
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&value[Order::SIZE..]);
        if order.id != id {
            return Err(HistoryError::Corrupt {
                what: ORDERS,
                detail: format!("key {id} holds order {}", order.id),
            });
        }
        Ok(Some((order, u64::from_be_bytes(timestamp))))
    }

    /// The fill with this sequence, which an index named.
    fn fill_at(&self, sequence: u64, named_by: &'static str) -> Result<Fill, HistoryError> {
        let value = self
            .fills
            .get(sequence.to_be_bytes())
            .map_err(self.fjall_error(FILLS))?;
        let Some(value) = value else {
            return Err(HistoryError::Corrupt {
                what: named_by,
                detail: format!("names fill {sequence}, which has no record"),
            });
        };
        let Ok(bytes) = <&[u8; Fill::SIZE]>::try_from(&value[..]) else {
            return Err(HistoryError::Corrupt {
                what: FILLS,
                detail: format!("fill {sequence}: {} bytes", value.len()),
            });
        };
        let fill = Fill::decode(bytes);
        if fill.sequence != sequence {
            return Err(HistoryError::Corrupt {
                what: FILLS,
                detail: format!("key {sequence} holds fill {}", fill.sequence),
            });
        }
        Ok(fill)
    }

    /// `get_fills` over the store, with the engine's semantics (docs/matching.md): the fills
    /// of `filter.market`, or of `filter.order_id` (as taker or maker; in any market when
    /// `filter.market` is 0), with `timestamp_min <= timestamp <= timestamp_max` (0:
    /// unbounded), oldest first or newest first (`FillFilter::REVERSED`), at most
    /// `filter.limit`. An invalid filter selects nothing. Appends to `out`.
    ///
    /// # Errors
    ///
    /// `Fjall` on a failed read; `Corrupt` if a key or a fill is damaged. `out` may then hold
    /// part of the answer.
    pub fn fills(&self, filter: &FillFilter, out: &mut Vec<Fill>) -> Result<(), HistoryError> {
        if filter.flags & !FillFilter::REVERSED != 0
            || filter.reserved != [0; 20]
            || filter.limit == 0
            || (filter.market == 0 && filter.order_id == 0)
        {
            return Ok(());
        }
        let maximum = if filter.timestamp_max == 0 {
            u64::MAX
        } else {
            filter.timestamp_max
        };
        if filter.timestamp_min > maximum {
            return Ok(());
        }
        let reversed = filter.flags & FillFilter::REVERSED != 0;
        let (what, range): (_, Box<dyn DoubleEndedIterator<Item = fjall::Guard>>) =
            if filter.order_id != 0 {
                let low = order_key(filter.order_id, filter.timestamp_min, 0);
                let high = order_key(filter.order_id, maximum, u64::MAX);
                (FILL_ORDERS, Box::new(self.fill_orders.range(low..=high)))
            } else {
                let low = market_key(filter.market, filter.timestamp_min, 0);
                let high = market_key(filter.market, maximum, u64::MAX);
                (FILL_MARKETS, Box::new(self.fill_markets.range(low..=high)))
            };
        let entries: Box<dyn Iterator<Item = fjall::Guard>> = if reversed {
            Box::new(range.rev())
        } else {
            range
        };
        let mut remaining = filter.limit as usize;
        for guard in entries {
            let key = guard.key().map_err(self.fjall_error(what))?;
            let fill = self.fill_at(key_sequence(what, &key)?, what)?;
            if filter.market == 0 || fill.market == filter.market {
                out.push(fill);
                remaining -= 1;
                if remaining == 0 {
                    break;
                }
            }
        }
        Ok(())
    }
}
