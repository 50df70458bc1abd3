//! switchboard-storage: the database behind Switchboard.
//!
//! One [`Storage`] handle (a small sqlx pool, cheap to clone) serves both backends:
//! **SQLite** (embedded default, a file created on first use) and **PostgreSQL** (production,
//! several nodes). The same runtime queries run on both through sqlx's `Any` driver, with `$N`
//! placeholders, `i64` epoch milliseconds for time and JSON stored as TEXT. Each backend has its
//! own migrations folder (`migrations/sqlite`, `migrations/postgres`), embedded at compile time
//! and applied by [`Storage::connect`].
//!
//! Repositories:
//! * users and their digest credentials ([`UserRecord`]): only HA1 hashes are stored, never a
//!   password;
//! * registrations, the RFC 3261 §10 location service ([`Binding`]);
//! * contact-centre configuration and routing journal ([`ContactWrite`], [`ContactEvent`]);
//! * call detail records ([`Cdr`]), with per-direction call quality;
//! * the recording index ([`Recording`]): where each call's recording files are;
//! * web chats and API-channel conversations ([`ChatRow`], [`ChatMessageRow`], [`ChatWrite`]);
//! * CRM ([`Contact`], [`Interaction`], [`Ticket`]): contacts with identities, tags and
//!   attributes, audited merges, tickets and notes, CSAT, and full-text search
//!   ([`SearchQuery`]: FTS5 on SQLite, tsvector + GIN on PostgreSQL); ticket attachments
//!   ([`TicketAttachment`]) and the SLA sweeper's breach marks ([`SlaTimer`]);
//! * the event stream ([`StoredEvent`]): published events by sequence number, for replay.
//!
//! Architecture invariant: this crate knows neither actors nor SIP messages. It stores what it is
//! given (an AOR is kept exactly as the caller normalised it) and decides nothing about calls.

#![warn(missing_docs)]

mod cdrs;
mod chat;
mod contact;
mod crm;
mod crm_search;
mod crm_ticket_files;
mod crm_tickets;
mod error;
mod events;
mod recordings;
mod registrations;
mod users;

pub use cdrs::{Cdr, CdrFilter};
pub use chat::{ChatAttachmentRow, ChatMessageRow, ChatRow, ChatWrite};
pub use contact::{ContactAgentRow, ContactEvent, ContactQueueRow, ContactWrite};
pub use crm::{Contact, Identity, MergeRecord, NewContact, Segment};
pub use crm_search::{CsatScore, Interaction, SearchHit, SearchQuery};
pub use crm_ticket_files::{SlaTimer, TicketAttachment};
pub use crm_tickets::{ConfigKind, NamedConfig, Ticket, TicketNote};
pub use error::StorageError;
pub use events::StoredEvent;
pub use recordings::Recording;
pub use registrations::Binding;
pub use users::{ha1_md5, ha1_sha256, UserRecord};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;
use sqlx::Executor;
use std::path::PathBuf;
use std::time::Duration;

/// Migrations for SQLite, embedded at compile time.
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
/// Migrations for PostgreSQL, embedded at compile time.
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Connections per pool: enough for a few concurrent writers and readers.
const POOL_SIZE: u32 = 4;
/// SQLite waits this long (ms) on a locked database before failing.
const SQLITE_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 5000";
/// Waiting for a free pool connection fails after this long.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The database behind a [`Storage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (`sqlite://path?mode=rwc`).
    Sqlite,
    /// PostgreSQL (`postgres://…` or `postgresql://…`).
    Postgres,
}

impl Backend {
    /// The backend a database URL names, if supported.
    pub fn from_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A handle on the database: a connection pool with the schema migrated. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Storage {
    pool: AnyPool,
    backend: Backend,
}

impl Storage {
    /// Opens `url` (`sqlite://path?mode=rwc`, `sqlite::memory:` or `postgres://…`), creating the
    /// SQLite file's parent directory if missing, and applies pending migrations.
    ///
    /// SQLite connections use WAL journaling and a busy timeout; PostgreSQL connections only
    /// report warnings and errors (no NOTICE chatter on every start).
    pub async fn connect(url: &str) -> Result<Storage, StorageError> {
        const OP: &str = "connect";
        let backend = Backend::from_url(url).ok_or_else(|| StorageError::UnsupportedUrl {
            scheme: url.split_once(':').map_or("", |s| s.0).to_string(),
        })?;
        sqlx::any::install_default_drivers();

        let mut options = AnyPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT);
        match backend {
            Backend::Sqlite => {
                let in_memory = match sqlite_file(url) {
                    Some(path) => {
                        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                            std::fs::create_dir_all(dir).map_err(|source| {
                                StorageError::CreateDir {
                                    path: dir.to_path_buf(),
                                    source,
                                }
                            })?;
                        }
                        false
                    }
                    None => true,
                };
                if in_memory {
                    // Through `Any`, every new connection parses the URL again and gets a
                    // database of its own, which vanishes when it closes: use exactly one,
                    // kept open for good.
                    options = options
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                }
                options = options.after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute(SQLITE_BUSY_TIMEOUT).await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        Ok(())
                    })
                });
            }
            Backend::Postgres => {
                options = options.after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute("SET client_min_messages TO warning").await?;
                        Ok(())
                    })
                });
            }
        }

        let pool = options
            .connect(url)
            .await
            .map_err(|e| StorageError::db(OP, e))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| StorageError::Migrate { source })?;
        tracing::debug!(backend = backend.name(), "storage ready");
        Ok(Storage { pool, backend })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; later calls on any clone fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The file a `sqlite:` URL names, or `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    let memory_mode = params
        .split('&')
        .any(|kv| kv.eq_ignore_ascii_case("mode=memory"));
    if database.is_empty() || database == ":memory:" || memory_mode {
        return None;
    }
    Some(PathBuf::from(percent_decode(database)))
}

/// Decodes `%XX` escapes (as sqlx does for SQLite file names); malformed escapes stay as is.
fn percent_decode(s: &str) -> String {
    fn hex(b: &u8) -> Option<u8> {
        (*b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(
            Backend::from_url("sqlite://a.db?mode=rwc"),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://x"), None);
        assert_eq!(Backend::from_url("nonsense"), None);
    }

    #[test]
    fn sqlite_file_from_url() {
        assert_eq!(
            sqlite_file("sqlite://data/switchboard.db?mode=rwc"),
            Some(PathBuf::from("data/switchboard.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///tmp/x%20y.db"),
            Some(PathBuf::from("/tmp/x y.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://:memory:"), None);
        assert_eq!(sqlite_file("sqlite://?mode=memory"), None);
    }

    #[test]
    fn percent_decode_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("%41b"), "Ab");
    }
}
