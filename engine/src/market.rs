//! Markets: the wire record that defines a tradable pair (base ledger against quote ledger) and
//! the result codes of `create_markets`.
//!
//! Layout byte for byte docs/protocol.md section 6.7 (128 bytes, little-endian, declared with
//! `wire_record!`).
//! `check_market` validates what the record alone decides; account look-ups (fee and escrow
//! accounts) and the market store are the engine's.

wire_record! {
    /// A market: base asset against quote asset, each a ledger (128 bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Market(128 bytes) {
        /// Receives maker and taker fees; on the quote ledger.
        pub fee_account_id: u128 @ 0,
        /// Holds base reserved by resting sells; on the base ledger.
        pub base_escrow_account_id: u128 @ 16,
        /// Holds quote reserved by resting buys; on the quote ledger.
        pub quote_escrow_account_id: u128 @ 32,
        /// Opaque client data.
        pub user_data_128: u128 @ 48,
        /// Base units per lot, >= 1.
        pub lot_size: u64 @ 64,
        /// Quote units per price step, >= 1.
        pub tick_size: u64 @ 72,
        /// Quote units per lot charged to the maker of a fill.
        pub maker_fee: u64 @ 80,
        /// Quote units per lot charged to the taker of a fill.
        pub taker_fee: u64 @ 88,
        /// Not 0 or `u32::MAX`.
        pub id: u32 @ 96,
        /// The ledger of the base asset.
        pub base_ledger: u32 @ 100,
        /// The ledger of the quote asset; not the base ledger.
        pub quote_ledger: u32 @ 104,
        /// The transfer code of settlement legs; not 0.
        pub code: u16 @ 108,
        /// None defined yet; must be 0.
        pub flags: u16 @ 110,
        /// Opaque client data.
        pub user_data_64: u64 @ 112,
        /// Engine: when the market was created.
        pub timestamp: u64 @ 120,
    }
}

status_enum! {
    /// Result codes of `create_markets`. Numbers are stable wire values; new codes are appended.
    ///
    /// Check order, first failing check wins: `timestamp_must_be_zero`, `reserved_flag`,
    /// `id_must_not_be_zero`, `id_must_not_be_int_max`, `base_ledger_must_not_be_zero`,
    /// `quote_ledger_must_not_be_zero`, `ledgers_must_be_different`, `lot_size_must_not_be_zero`,
    /// `tick_size_must_not_be_zero`, `code_must_not_be_zero` (these are `check_market`); then in
    /// the engine `exists` or `exists_with_different_fields`, `fee_account_not_found`,
    /// `fee_account_ledger_must_be_quote`, `base_escrow_account_not_found`,
    /// `base_escrow_account_ledger_must_be_base`, `quote_escrow_account_not_found`,
    /// `quote_escrow_account_ledger_must_be_quote`, and last `markets_capacity_exceeded`.
    pub enum CreateMarketStatus {
        /// The market was created.
        Created = 0xFFFF_FFFF => "created",
        /// The engine field `timestamp` is not 0.
        TimestampMustBeZero = 1100 => "timestamp_must_be_zero",
        /// `flags` sets an undefined bit.
        ReservedFlag = 1101 => "reserved_flag",
        /// `id` is 0.
        IdMustNotBeZero = 1102 => "id_must_not_be_zero",
        /// `id` is `u32::MAX`.
        IdMustNotBeIntMax = 1103 => "id_must_not_be_int_max",
        /// `base_ledger` is 0.
        BaseLedgerMustNotBeZero = 1104 => "base_ledger_must_not_be_zero",
        /// `quote_ledger` is 0.
        QuoteLedgerMustNotBeZero = 1105 => "quote_ledger_must_not_be_zero",
        /// `base_ledger` equals `quote_ledger`.
        LedgersMustBeDifferent = 1106 => "ledgers_must_be_different",
        /// `lot_size` is 0.
        LotSizeMustNotBeZero = 1107 => "lot_size_must_not_be_zero",
        /// `tick_size` is 0.
        TickSizeMustNotBeZero = 1108 => "tick_size_must_not_be_zero",
        /// `code` is 0.
        CodeMustNotBeZero = 1109 => "code_must_not_be_zero",
        /// A market with this id and the same fields exists.
        Exists = 1110 => "exists",
        /// A market with this id but different fields exists.
        ExistsWithDifferentFields = 1111 => "exists_with_different_fields",
        /// `fee_account_id` names no account.
        FeeAccountNotFound = 1112 => "fee_account_not_found",
        /// The fee account is not on the quote ledger.
        FeeAccountLedgerMustBeQuote = 1113 => "fee_account_ledger_must_be_quote",
        /// `base_escrow_account_id` names no account.
        BaseEscrowAccountNotFound = 1114 => "base_escrow_account_not_found",
        /// The base escrow account is not on the base ledger.
        BaseEscrowAccountLedgerMustBeBase = 1115 => "base_escrow_account_ledger_must_be_base",
        /// `quote_escrow_account_id` names no account.
        QuoteEscrowAccountNotFound = 1116 => "quote_escrow_account_not_found",
        /// The quote escrow account is not on the quote ledger.
        QuoteEscrowAccountLedgerMustBeQuote = 1117 => "quote_escrow_account_ledger_must_be_quote",
        /// The engine holds `markets_max` markets.
        MarketsCapacityExceeded = 1118 => "markets_capacity_exceeded",
    }
}

/// Validates the fields of a market that the record alone decides (the first ten checks of
/// `CreateMarketStatus`'s order). Returns `None` when they pass.
pub fn check_market(market: &Market) -> Option<CreateMarketStatus> {
    if market.timestamp != 0 {
        return Some(CreateMarketStatus::TimestampMustBeZero);
    }
    if market.flags != 0 {
        return Some(CreateMarketStatus::ReservedFlag);
    }
    if market.id == 0 {
        return Some(CreateMarketStatus::IdMustNotBeZero);
    }
    if market.id == u32::MAX {
        return Some(CreateMarketStatus::IdMustNotBeIntMax);
    }
    if market.base_ledger == 0 {
        return Some(CreateMarketStatus::BaseLedgerMustNotBeZero);
    }
    if market.quote_ledger == 0 {
        return Some(CreateMarketStatus::QuoteLedgerMustNotBeZero);
    }
    if market.base_ledger == market.quote_ledger {
        return Some(CreateMarketStatus::LedgersMustBeDifferent);
    }
    if market.lot_size == 0 {
        return Some(CreateMarketStatus::LotSizeMustNotBeZero);
    }
    if market.tick_size == 0 {
        return Some(CreateMarketStatus::TickSizeMustNotBeZero);
    }
    if market.code == 0 {
        return Some(CreateMarketStatus::CodeMustNotBeZero);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_golden_bytes() {
        let mut bytes = [0u8; 128];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = index as u8;
        }
        let market = Market::decode(&bytes);
        assert_eq!(
            market.fee_account_id,
            0x0F0E_0D0C_0B0A_0908_0706_0504_0302_0100
        );
        assert_eq!(market.lot_size, 0x4746_4544_4342_4140);
        assert_eq!(market.taker_fee, 0x5F5E_5D5C_5B5A_5958);
        assert_eq!(market.id, 0x6362_6160);
        assert_eq!(market.quote_ledger, 0x6B6A_6968);
        assert_eq!(market.code, 0x6D6C);
        assert_eq!(market.flags, 0x6F6E);
        assert_eq!(market.user_data_64, 0x7776_7574_7372_7170);
        assert_eq!(market.timestamp, 0x7F7E_7D7C_7B7A_7978);
        let mut out = [0u8; 128];
        market.encode(&mut out);
        assert_eq!(out, bytes);
    }

    fn valid() -> Market {
        Market {
            id: 1,
            base_ledger: 1,
            quote_ledger: 2,
            lot_size: 1,
            tick_size: 1,
            code: 1,
            ..Market::default()
        }
    }

    fn check(mutate: impl FnOnce(&mut Market), expected: Option<CreateMarketStatus>) {
        let mut market = valid();
        mutate(&mut market);
        assert_eq!(check_market(&market), expected, "{market:?}");
    }

    #[test]
    fn check_market_in_documented_order() {
        use CreateMarketStatus as S;
        check(|_| {}, None);
        check(
            |m| {
                m.timestamp = 1;
                m.flags = 1
            },
            Some(S::TimestampMustBeZero),
        );
        check(
            |m| {
                m.flags = 1;
                m.id = 0
            },
            Some(S::ReservedFlag),
        );
        check(
            |m| {
                m.id = 0;
                m.base_ledger = 0
            },
            Some(S::IdMustNotBeZero),
        );
        check(|m| m.id = u32::MAX, Some(S::IdMustNotBeIntMax));
        check(
            |m| {
                m.base_ledger = 0;
                m.quote_ledger = 0
            },
            Some(S::BaseLedgerMustNotBeZero),
        );
        check(|m| m.quote_ledger = 0, Some(S::QuoteLedgerMustNotBeZero));
        check(
            |m| {
                m.quote_ledger = 1;
                m.lot_size = 0
            },
            Some(S::LedgersMustBeDifferent),
        );
        check(
            |m| {
                m.lot_size = 0;
                m.tick_size = 0
            },
            Some(S::LotSizeMustNotBeZero),
        );
        check(
            |m| {
                m.tick_size = 0;
                m.code = 0
            },
            Some(S::TickSizeMustNotBeZero),
        );
        check(|m| m.code = 0, Some(S::CodeMustNotBeZero));
    }

    #[test]
    fn market_status_numbers_are_stable() {
        assert_eq!(CreateMarketStatus::TimestampMustBeZero as u32, 1100);
        assert_eq!(CreateMarketStatus::MarketsCapacityExceeded as u32, 1118);
        for (index, status) in CreateMarketStatus::ALL.iter().enumerate().skip(1) {
            assert_eq!(*status as u32, 1099 + index as u32, "{}", status.name());
        }
        for &status in CreateMarketStatus::ALL {
            assert_eq!(CreateMarketStatus::from_u32(status as u32), Some(status));
        }
    }
}
