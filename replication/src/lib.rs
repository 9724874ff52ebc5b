//! Replication groundwork (docs/replication.md): who leads a group, held in etcd under a lease
//! with a strictly increasing epoch ([`leadership`]), and the frames of the stream that carries
//! journal records from a primary to its backups ([`frame`]).
//!
//! Invariants: nothing here runs on the core's path. [`leadership`] does its etcd calls on its
//! own thread and publishes its outcome through an atomic and a small mutex; [`frame`] encodes
//! into and decodes from the caller's buffers without allocating.
//!
//! Does not yet stream, apply or acknowledge anything: the server, the journal and the network
//! layer do not use this crate so far.

pub mod frame;
pub mod leadership;
