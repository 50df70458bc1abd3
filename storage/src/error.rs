//! [`StorageError`]: every failure names the operation that failed.

use std::path::PathBuf;

/// A storage failure. The message names the operation (`add_user`, `upsert_binding`, …).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL names no supported backend (only its scheme is kept: URLs may hold passwords).
    #[error(
        "connect: unsupported database URL scheme {scheme:?} (expected sqlite:// or postgres://)"
    )]
    UnsupportedUrl {
        /// The scheme found, possibly empty.
        scheme: String,
    },
    /// The directory for the SQLite file could not be created.
    #[error("connect: cannot create database directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Applying the migrations failed.
    #[error("migrate: {source}")]
    Migrate {
        /// The cause.
        source: sqlx::migrate::MigrateError,
    },
    /// The row already exists (e.g. a user with the same name and realm).
    #[error("{op}: {what} already exists")]
    Conflict {
        /// The operation.
        op: &'static str,
        /// What exists, e.g. `user "alice" in realm "switchboard"`.
        what: String,
    },
    /// A CRM identity already belongs to another contact (merge them instead).
    #[error("identity {kind}:{value} belongs to contact {contact_id}")]
    IdentityTaken {
        /// Its kind.
        kind: String,
        /// Its value.
        value: String,
        /// The contact owning it.
        contact_id: i64,
    },
    /// An argument was refused before reaching the database.
    #[error("{op}: {reason}")]
    Invalid {
        /// The operation.
        op: &'static str,
        /// Why.
        reason: String,
    },
    /// The database refused or failed a query.
    #[error("{op}: {source}")]
    Database {
        /// The operation.
        op: &'static str,
        /// The cause.
        source: sqlx::Error,
    },
}

impl StorageError {
    pub(crate) fn db(op: &'static str, source: sqlx::Error) -> StorageError {
        StorageError::Database { op, source }
    }

    /// Returns a closure mapping a sqlx error to a [`StorageError::Database`] for `op`.
    pub(crate) fn at(op: &'static str) -> impl Fn(sqlx::Error) -> StorageError {
        move |source| StorageError::Database { op, source }
    }
}
