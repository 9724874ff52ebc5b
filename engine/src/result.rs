//! Results of create operations: the 16-byte `CreateResult` record and the status codes of
//! `create_accounts` (`CreateAccountStatus`) and `create_transfers` (`CreateTransferStatus`).
//!
//! Numbers and names are those of docs/ledger.md, Result codes (gap-free 0..=26 and
//! 0..=68, `created` = `u32::MAX`), plus clearline's capacity codes from 200. Capacity codes are
//! not transient: they do not burn the id, a retry after capacity is freed may succeed. The
//! declaration order here is numeric; the order in which the ledger checks them is in ledger.rs.

wire_record! {
    /// The result of one create event: the status and the timestamp it refers to (the object's for
    /// `created`/`exists`, else the event's slot, see docs/ledger.md, Timestamps).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(C)]
    pub struct CreateResult(16 bytes) {
        /// Timestamp of the object or of the event's slot.
        pub timestamp: u64 @ 0,
        /// A `CreateAccountStatus` or `CreateTransferStatus` number.
        pub status: u32 @ 8,
        /// Zero.
        pub reserved: u32 @ 12,
    }
}

impl CreateResult {
    /// The status number of `created`, for both accounts and transfers.
    pub const STATUS_CREATED: u32 = 0xFFFF_FFFF;
}

macro_rules! status_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$variant_meta:meta])* $variant:ident = $value:expr
            => $text:literal, )* }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant = $value, )*
        }

        impl $name {
            /// Every status, in declaration (numeric) order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )* ];

            /// The snake_case name used in docs, logs and clients, e.g. `"exceeds_credits"`.
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }

            /// The status with this number, if any.
            pub fn from_u32(value: u32) -> Option<$name> {
                match value {
                    $( $value => Some($name::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

status_enum! {
    /// Outcome of one `create_accounts` event. Accounts have no transient failures.
    pub enum CreateAccountStatus {
        /// The account was created.
        Created = 0xFFFF_FFFF => "created",
        /// Only for clients of the deprecated sparse results; never produced.
        DeprecatedOk = 0 => "deprecated_ok",
        /// Another event of the linked chain failed.
        LinkedEventFailed = 1 => "linked_event_failed",
        /// The last event of the batch has `linked` set.
        LinkedEventChainOpen = 2 => "linked_event_chain_open",
        /// A non-imported event must carry timestamp 0.
        TimestampMustBeZero = 3 => "timestamp_must_be_zero",
        /// `reserved` is not zero.
        ReservedField = 4 => "reserved_field",
        /// A padding flag bit is set.
        ReservedFlag = 5 => "reserved_flag",
        /// The id is 0.
        IdMustNotBeZero = 6 => "id_must_not_be_zero",
        /// The id is `u128::MAX`.
        IdMustNotBeIntMax = 7 => "id_must_not_be_int_max",
        /// Both limit flags are set.
        FlagsAreMutuallyExclusive = 8 => "flags_are_mutually_exclusive",
        /// `debits_pending` is not zero.
        DebitsPendingMustBeZero = 9 => "debits_pending_must_be_zero",
        /// `debits_posted` is not zero.
        DebitsPostedMustBeZero = 10 => "debits_posted_must_be_zero",
        /// `credits_pending` is not zero.
        CreditsPendingMustBeZero = 11 => "credits_pending_must_be_zero",
        /// `credits_posted` is not zero.
        CreditsPostedMustBeZero = 12 => "credits_posted_must_be_zero",
        /// `ledger` is 0.
        LedgerMustNotBeZero = 13 => "ledger_must_not_be_zero",
        /// `code` is 0.
        CodeMustNotBeZero = 14 => "code_must_not_be_zero",
        /// The id exists with other flags.
        ExistsWithDifferentFlags = 15 => "exists_with_different_flags",
        /// The id exists with another `user_data_128`.
        ExistsWithDifferentUserData128 = 16 => "exists_with_different_user_data_128",
        /// The id exists with another `user_data_64`.
        ExistsWithDifferentUserData64 = 17 => "exists_with_different_user_data_64",
        /// The id exists with another `user_data_32`.
        ExistsWithDifferentUserData32 = 18 => "exists_with_different_user_data_32",
        /// The id exists with another ledger.
        ExistsWithDifferentLedger = 19 => "exists_with_different_ledger",
        /// The id exists with another code.
        ExistsWithDifferentCode = 20 => "exists_with_different_code",
        /// The same account exists.
        Exists = 21 => "exists",
        /// The batch is imported but this event is not.
        ImportedEventExpected = 22 => "imported_event_expected",
        /// The event is imported but the batch is not.
        ImportedEventNotExpected = 23 => "imported_event_not_expected",
        /// The imported timestamp is 0 or above `TIMESTAMP_MAX`.
        ImportedEventTimestampOutOfRange = 24 => "imported_event_timestamp_out_of_range",
        /// The imported timestamp is not before the event's own slot timestamp.
        ImportedEventTimestampMustNotAdvance = 25 => "imported_event_timestamp_must_not_advance",
        /// The imported timestamp is not after every account, or collides with a transfer.
        ImportedEventTimestampMustNotRegress = 26 => "imported_event_timestamp_must_not_regress",
        /// The account store is full (clearline; not transient).
        AccountsCapacityExceeded = 200 => "accounts_capacity_exceeded",
    }
}

status_enum! {
    /// Outcome of one `create_transfers` event. Transient failures (see `is_transient`) burn the
    /// id: any later transfer with it gets `IdAlreadyFailed`.
    pub enum CreateTransferStatus {
        /// The transfer was created.
        Created = 0xFFFF_FFFF => "created",
        /// Only for clients of the deprecated sparse results; never produced.
        DeprecatedOk = 0 => "deprecated_ok",
        /// Another event of the linked chain failed.
        LinkedEventFailed = 1 => "linked_event_failed",
        /// The last event of the batch has `linked` set.
        LinkedEventChainOpen = 2 => "linked_event_chain_open",
        /// A non-imported event must carry timestamp 0.
        TimestampMustBeZero = 3 => "timestamp_must_be_zero",
        /// A padding flag bit is set.
        ReservedFlag = 4 => "reserved_flag",
        /// The id is 0.
        IdMustNotBeZero = 5 => "id_must_not_be_zero",
        /// The id is `u128::MAX`.
        IdMustNotBeIntMax = 6 => "id_must_not_be_int_max",
        /// Incompatible flags.
        FlagsAreMutuallyExclusive = 7 => "flags_are_mutually_exclusive",
        /// `debit_account_id` is 0.
        DebitAccountIdMustNotBeZero = 8 => "debit_account_id_must_not_be_zero",
        /// `debit_account_id` is `u128::MAX`.
        DebitAccountIdMustNotBeIntMax = 9 => "debit_account_id_must_not_be_int_max",
        /// `credit_account_id` is 0.
        CreditAccountIdMustNotBeZero = 10 => "credit_account_id_must_not_be_zero",
        /// `credit_account_id` is `u128::MAX`.
        CreditAccountIdMustNotBeIntMax = 11 => "credit_account_id_must_not_be_int_max",
        /// Debit and credit account are the same.
        AccountsMustBeDifferent = 12 => "accounts_must_be_different",
        /// `pending_id` is set on a transfer that is neither a post nor a void.
        PendingIdMustBeZero = 13 => "pending_id_must_be_zero",
        /// A post or void without `pending_id`.
        PendingIdMustNotBeZero = 14 => "pending_id_must_not_be_zero",
        /// `pending_id` is `u128::MAX`.
        PendingIdMustNotBeIntMax = 15 => "pending_id_must_not_be_int_max",
        /// `pending_id` equals the transfer's own id.
        PendingIdMustBeDifferent = 16 => "pending_id_must_be_different",
        /// `timeout` on a transfer that is not pending.
        TimeoutReservedForPendingTransfer = 17 => "timeout_reserved_for_pending_transfer",
        /// Formerly `amount_must_not_be_zero`; never produced.
        Deprecated18 = 18 => "deprecated_18",
        /// `ledger` is 0.
        LedgerMustNotBeZero = 19 => "ledger_must_not_be_zero",
        /// `code` is 0.
        CodeMustNotBeZero = 20 => "code_must_not_be_zero",
        /// No such debit account (transient).
        DebitAccountNotFound = 21 => "debit_account_not_found",
        /// No such credit account (transient).
        CreditAccountNotFound = 22 => "credit_account_not_found",
        /// The accounts are on different ledgers.
        AccountsMustHaveTheSameLedger = 23 => "accounts_must_have_the_same_ledger",
        /// The transfer's ledger differs from the accounts'.
        TransferMustHaveTheSameLedgerAsAccounts =
            24 => "transfer_must_have_the_same_ledger_as_accounts",
        /// No such pending transfer (transient).
        PendingTransferNotFound = 25 => "pending_transfer_not_found",
        /// `pending_id` names a transfer that is not pending.
        PendingTransferNotPending = 26 => "pending_transfer_not_pending",
        /// The post/void names another debit account than the pending transfer.
        PendingTransferHasDifferentDebitAccountId =
            27 => "pending_transfer_has_different_debit_account_id",
        /// The post/void names another credit account than the pending transfer.
        PendingTransferHasDifferentCreditAccountId =
            28 => "pending_transfer_has_different_credit_account_id",
        /// The post/void names another ledger than the pending transfer.
        PendingTransferHasDifferentLedger = 29 => "pending_transfer_has_different_ledger",
        /// The post/void names another code than the pending transfer.
        PendingTransferHasDifferentCode = 30 => "pending_transfer_has_different_code",
        /// The post/void amount exceeds the pending amount.
        ExceedsPendingTransferAmount = 31 => "exceeds_pending_transfer_amount",
        /// A void for less than the pending amount.
        PendingTransferHasDifferentAmount = 32 => "pending_transfer_has_different_amount",
        /// The pending transfer was posted already.
        PendingTransferAlreadyPosted = 33 => "pending_transfer_already_posted",
        /// The pending transfer was voided already.
        PendingTransferAlreadyVoided = 34 => "pending_transfer_already_voided",
        /// The pending transfer expired (or is due).
        PendingTransferExpired = 35 => "pending_transfer_expired",
        /// The id exists with other flags.
        ExistsWithDifferentFlags = 36 => "exists_with_different_flags",
        /// The id exists with another debit account.
        ExistsWithDifferentDebitAccountId = 37 => "exists_with_different_debit_account_id",
        /// The id exists with another credit account.
        ExistsWithDifferentCreditAccountId = 38 => "exists_with_different_credit_account_id",
        /// The id exists with another amount.
        ExistsWithDifferentAmount = 39 => "exists_with_different_amount",
        /// The id exists with another `pending_id`.
        ExistsWithDifferentPendingId = 40 => "exists_with_different_pending_id",
        /// The id exists with another `user_data_128`.
        ExistsWithDifferentUserData128 = 41 => "exists_with_different_user_data_128",
        /// The id exists with another `user_data_64`.
        ExistsWithDifferentUserData64 = 42 => "exists_with_different_user_data_64",
        /// The id exists with another `user_data_32`.
        ExistsWithDifferentUserData32 = 43 => "exists_with_different_user_data_32",
        /// The id exists with another timeout.
        ExistsWithDifferentTimeout = 44 => "exists_with_different_timeout",
        /// The id exists with another code.
        ExistsWithDifferentCode = 45 => "exists_with_different_code",
        /// The same transfer exists.
        Exists = 46 => "exists",
        /// `debits_pending` would overflow.
        OverflowsDebitsPending = 47 => "overflows_debits_pending",
        /// `credits_pending` would overflow.
        OverflowsCreditsPending = 48 => "overflows_credits_pending",
        /// `debits_posted` would overflow.
        OverflowsDebitsPosted = 49 => "overflows_debits_posted",
        /// `credits_posted` would overflow.
        OverflowsCreditsPosted = 50 => "overflows_credits_posted",
        /// Pending plus posted debits would overflow.
        OverflowsDebits = 51 => "overflows_debits",
        /// Pending plus posted credits would overflow.
        OverflowsCredits = 52 => "overflows_credits",
        /// The expiry time would exceed `TIMESTAMP_MAX`.
        OverflowsTimeout = 53 => "overflows_timeout",
        /// The debit account's debits would exceed its credits (transient).
        ExceedsCredits = 54 => "exceeds_credits",
        /// The credit account's credits would exceed its debits (transient).
        ExceedsDebits = 55 => "exceeds_debits",
        /// The batch is imported but this event is not.
        ImportedEventExpected = 56 => "imported_event_expected",
        /// The event is imported but the batch is not.
        ImportedEventNotExpected = 57 => "imported_event_not_expected",
        /// The imported timestamp is 0 or above `TIMESTAMP_MAX`.
        ImportedEventTimestampOutOfRange = 58 => "imported_event_timestamp_out_of_range",
        /// The imported timestamp is not before the event's own slot timestamp.
        ImportedEventTimestampMustNotAdvance = 59 => "imported_event_timestamp_must_not_advance",
        /// The imported timestamp is not after every transfer, or collides with an account.
        ImportedEventTimestampMustNotRegress = 60 => "imported_event_timestamp_must_not_regress",
        /// The imported timestamp is not after the debit account's.
        ImportedEventTimestampMustPostdateDebitAccount =
            61 => "imported_event_timestamp_must_postdate_debit_account",
        /// The imported timestamp is not after the credit account's.
        ImportedEventTimestampMustPostdateCreditAccount =
            62 => "imported_event_timestamp_must_postdate_credit_account",
        /// Imported pending transfers cannot expire.
        ImportedEventTimeoutMustBeZero = 63 => "imported_event_timeout_must_be_zero",
        /// Closing flags need `pending`.
        ClosingTransferMustBePending = 64 => "closing_transfer_must_be_pending",
        /// The debit account is closed (transient).
        DebitAccountAlreadyClosed = 65 => "debit_account_already_closed",
        /// The credit account is closed (transient).
        CreditAccountAlreadyClosed = 66 => "credit_account_already_closed",
        /// The id exists with another ledger.
        ExistsWithDifferentLedger = 67 => "exists_with_different_ledger",
        /// The id was burned by an earlier transient failure.
        IdAlreadyFailed = 68 => "id_already_failed",
        /// The transfer store (or the store of burned ids) is full (clearline; not transient).
        TransfersCapacityExceeded = 200 => "transfers_capacity_exceeded",
        /// Too many unresolved pending transfers (clearline; not transient).
        PendingTransfersCapacityExceeded = 201 => "pending_transfers_capacity_exceeded",
        /// The balance history store is full (clearline; not transient).
        AccountBalancesCapacityExceeded = 202 => "account_balances_capacity_exceeded",
        // 203 is retired and stays unused: it was `id_reserved_for_settlement`, from when
        // client ids with bit 127 set were refused. Settlement transfers now have an id
        // namespace of their own (`TransferFlags::SETTLEMENT`), so every id but 0 and
        // `u128::MAX` is a valid client id.
    }
}

impl CreateTransferStatus {
    /// Whether this failure burns the transfer's id (docs/ledger.md, Idempotency): a later
    /// transfer with the same id gets `IdAlreadyFailed` whatever its content.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            CreateTransferStatus::DebitAccountNotFound
                | CreateTransferStatus::CreditAccountNotFound
                | CreateTransferStatus::PendingTransferNotFound
                | CreateTransferStatus::ExceedsCredits
                | CreateTransferStatus::ExceedsDebits
                | CreateTransferStatus::DebitAccountAlreadyClosed
                | CreateTransferStatus::CreditAccountAlreadyClosed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_result_golden_bytes() {
        let result = CreateResult {
            timestamp: 0x0706_0504_0302_0100,
            status: 0x0B0A_0908,
            reserved: 0x0F0E_0D0C,
        };
        let mut bytes = [0u8; 16];
        result.encode(&mut bytes);
        assert_eq!(
            bytes,
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
        );
        assert_eq!(CreateResult::decode(&bytes), result);
    }

    #[test]
    fn account_statuses_are_gap_free_and_round_trip() {
        for value in 0..=26 {
            let status = CreateAccountStatus::from_u32(value).expect("gap-free 0..=26");
            assert_eq!(status as u32, value);
        }
        assert_eq!(CreateAccountStatus::from_u32(27), None);
        for status in CreateAccountStatus::ALL {
            assert_eq!(CreateAccountStatus::from_u32(*status as u32), Some(*status));
        }
        assert_eq!(
            CreateAccountStatus::Created as u32,
            CreateResult::STATUS_CREATED
        );
        assert_eq!(CreateAccountStatus::ReservedField.name(), "reserved_field");
        assert_eq!(CreateAccountStatus::AccountsCapacityExceeded as u32, 200);
    }

    #[test]
    fn transfer_statuses_are_gap_free_and_round_trip() {
        for value in 0..=68 {
            let status = CreateTransferStatus::from_u32(value).expect("gap-free 0..=68");
            assert_eq!(status as u32, value);
        }
        assert_eq!(CreateTransferStatus::from_u32(69), None);
        for status in CreateTransferStatus::ALL {
            assert_eq!(
                CreateTransferStatus::from_u32(*status as u32),
                Some(*status)
            );
        }
        assert_eq!(
            CreateTransferStatus::ExceedsCredits.name(),
            "exceeds_credits"
        );
        assert_eq!(CreateTransferStatus::IdAlreadyFailed as u32, 68);
        assert_eq!(CreateTransferStatus::ExistsWithDifferentLedger as u32, 67);
        assert_eq!(
            CreateTransferStatus::AccountBalancesCapacityExceeded as u32,
            202
        );
        let transient = CreateTransferStatus::ALL
            .iter()
            .filter(|s| s.is_transient())
            .count();
        assert_eq!(transient, 7);
    }
}
