//! SQLite persistence for zrobot: the robot's [`Store`](zrobot_core::store::Store)
//! on one database file, and the only crate that knows SQL.
//!
//! # Layout
//!
//! - [`SqliteStore`] (`store`): opening, the `Store` implementation, and the
//!   robot-wide tables (webhooks, template repositories).
//! - `schema`: the tables and their versioned migrations.
//! - `writer`: the one thread that writes, in groups of commits.
//! - `checkpoint`: the thread that flushes the WAL and copies it into the
//!   database file, so that the writer seldom waits for the disk.
//! - `history`: where finished tasks go, and the background work that indexes
//!   them by service and trims what retention drops.
//! - `read`: the read queries and the pool of read connections.
//! - `codec`: how records map to rows.
//!
//! # Invariants
//!
//! - Only the writer thread writes, in the order commits were made; a commit
//!   resolves once its transaction is in the WAL, which a killed process does
//!   not lose.
//! - No SQLite call runs on an async thread.
//! - What reads return already obeys retention, whatever the trim has reached.

mod checkpoint;
mod codec;
mod error;
mod history;
mod read;
mod schema;
mod store;
mod writer;

pub use store::{SqliteStore, TemplateRepo, Webhook, WriterStats};
