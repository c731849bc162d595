//! Internal failures, and how they become the [`StoreError`] a user reads: every
//! message names the database file and what was being done.

use zrobot_core::store::StoreError;

/// Why one database step failed, before it is given its context.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// A row that this code did not write, or that was damaged.
    #[error("{what} of {owner} is invalid ({detail}); the database may have been edited by hand or damaged")]
    Corrupt {
        what: &'static str,
        owner: String,
        detail: String,
    },
}

/// `database <db>: <doing> failed: <cause>`.
pub(crate) fn store_error(
    db: &str,
    doing: &str,
    cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> StoreError {
    StoreError::failed(db, doing, cause)
}

impl From<rusqlite::types::FromSqlError> for Failure {
    fn from(e: rusqlite::types::FromSqlError) -> Failure {
        Failure::Sql(e.into())
    }
}

/// The writer thread is gone: nothing more can be written.
pub(crate) fn stopped(db: &str) -> StoreError {
    StoreError::Stopped { db: db.to_owned() }
}
