//! The clearline engine: the deterministic state machine for accounts, transfers, markets and
//! orders.
//!
//! It does no I/O, reads no clock, spawns no threads and allocates nothing after creation; time
//! arrives inside commands.
#![forbid(unsafe_code)]

pub mod account;
pub mod book;
pub mod limits;
pub mod market;
mod operation;
pub mod order;
pub mod result;
pub mod transfer;
mod wire;

pub use account::{Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags};
pub use limits::{Config, BATCH_EVENTS_MAX, PULSE_EXPIRIES_MAX, TIMESTAMP_MAX};
pub use operation::Operation;
pub use result::{CreateAccountStatus, CreateResult, CreateTransferStatus};
pub use transfer::{QueryFilter, QueryFilterFlags, Transfer, TransferFlags};

/// The state machine. Placeholder with the agreed signatures; the ledger fills it in.
pub struct Engine {
    config: Config,
}

#[allow(unused_variables, missing_docs, clippy::ptr_arg)]
impl Engine {
    pub fn new(config: &Config) -> Engine {
        config.assert_valid();
        Engine { config: *config }
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn create_accounts(
        &mut self,
        timestamp: u64,
        events: &[Account],
        results: &mut [CreateResult],
    ) {
        unimplemented!()
    }
    pub fn create_transfers(
        &mut self,
        timestamp: u64,
        events: &[Transfer],
        results: &mut [CreateResult],
    ) {
        unimplemented!()
    }
    pub fn lookup_accounts(&self, ids: &[u128], out: &mut Vec<Account>) {
        unimplemented!()
    }
    pub fn lookup_transfers(&self, ids: &[u128], out: &mut Vec<Transfer>) {
        unimplemented!()
    }
    pub fn get_account_transfers(&self, filter: &AccountFilter, out: &mut Vec<Transfer>) {
        unimplemented!()
    }
    pub fn get_account_balances(&self, filter: &AccountFilter, out: &mut Vec<AccountBalance>) {
        unimplemented!()
    }
    pub fn query_accounts(&self, filter: &QueryFilter, out: &mut Vec<Account>) {
        unimplemented!()
    }
    pub fn query_transfers(&self, filter: &QueryFilter, out: &mut Vec<Transfer>) {
        unimplemented!()
    }
    pub fn pulse(&mut self, timestamp: u64) -> u32 {
        unimplemented!()
    }
    pub fn state_hash(&self) -> u128 {
        unimplemented!()
    }
    pub fn accounts_count(&self) -> u32 {
        unimplemented!()
    }
    pub fn transfers_count(&self) -> u32 {
        unimplemented!()
    }
    pub fn verify(&self) {
        unimplemented!()
    }
    pub fn execute(
        &mut self,
        operation: Operation,
        timestamp: u64,
        body: &[u8],
        reply: &mut [u8],
    ) -> usize {
        unimplemented!()
    }
}
