//! Replication (docs/replication.md): who leads a group, held in etcd under a lease
//! with a strictly increasing epoch ([`leadership`]), and the frames of the stream that carries
//! journal records from a primary to its backups ([`frame`]).
//!
//! Invariants: nothing here runs on the core's path. [`leadership`] does its etcd calls on its
//! own thread and publishes its outcome through an atomic and a small mutex; [`frame`] encodes
//! into and decodes from the caller's buffers without allocating.
//!
//! Does not stream, apply or acknowledge anything itself: the server (`src/replica/`,
//! `src/node.rs`) does, with these two parts.

pub mod frame;
pub mod leadership;
