//! Admin subcommands run against the database: `switchboard user …` and `switchboard cdr …`.
//!
//! Each opens the database named by `--database-url`, else by the configuration
//! (`--config FILE`, else the embedded defaults), runs one operation on a current-thread
//! runtime and exits: 0 on success, 1 when the operation fails, 2 for a bad configuration.
//! Results go to stdout, errors to stderr.

use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard_engine::config::Config;
use switchboard_storage::{Cdr, Storage, StorageError, UserRecord};

/// Where the database is; accepted before or after the subcommand.
#[derive(Args, Debug)]
pub struct DbArgs {
    /// TOML configuration file: gives `database.url` and `registrar.realm`.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Database URL (`sqlite://path?mode=rwc` or `postgres://…`); overrides the configuration.
    #[arg(long, global = true)]
    database_url: Option<String>,
}

/// `switchboard user …`.
#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Adds a user; only digest hashes (HA1) of the password are stored.
    Add {
        /// The username (the user part of `sip:NAME@realm`).
        name: String,
        /// The SIP password.
        #[arg(long)]
        password: String,
        /// The digest realm; default: `registrar.realm` of the configuration.
        #[arg(long)]
        realm: Option<String>,
        /// A human-readable name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Lists the users.
    List,
    /// Removes a user.
    Remove {
        /// The username.
        name: String,
        /// The digest realm; default: `registrar.realm` of the configuration.
        #[arg(long)]
        realm: Option<String>,
    },
}

/// `switchboard cdr …`.
#[derive(Args, Debug)]
pub struct CdrArgs {
    #[command(subcommand)]
    command: CdrCommand,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Subcommand, Debug)]
enum CdrCommand {
    /// Lists the newest call detail records, newest first.
    List {
        /// How many records at most.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Why an admin command failed.
enum Failure {
    /// The configuration could not be loaded (exit 2).
    Config(String),
    /// Anything else (exit 1).
    Run(String),
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Failure {
        Failure::Run(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Run(format!("cannot write the output: {e}"))
    }
}

/// Runs `switchboard user …`.
pub fn user(args: UserArgs) -> ExitCode {
    finish(run(&args.db, |storage, config| async move {
        let realm_or_default =
            |r: Option<String>| r.unwrap_or_else(|| config.registrar.realm.clone());
        match args.command {
            UserCommand::Add {
                name,
                password,
                realm,
                display_name,
            } => {
                let realm = realm_or_default(realm);
                storage
                    .add_user(&name, &realm, &password, display_name.as_deref())
                    .await?;
                writeln!(std::io::stdout(), "added user {name} in realm {realm}")?;
            }
            UserCommand::List => {
                let users = storage.list_users().await?;
                print_users(&users)?;
            }
            UserCommand::Remove { name, realm } => {
                let realm = realm_or_default(realm);
                if !storage.remove_user(&name, &realm).await? {
                    return Err(Failure::Run(format!("no user {name:?} in realm {realm:?}")));
                }
                writeln!(std::io::stdout(), "removed user {name} from realm {realm}")?;
            }
        }
        Ok(())
    }))
}

/// Runs `switchboard cdr …`.
pub fn cdr(args: CdrArgs) -> ExitCode {
    finish(run(&args.db, |storage, _config| async move {
        match args.command {
            CdrCommand::List { limit, json } => {
                let cdrs = storage.list_cdrs(limit).await?;
                if json {
                    let mut out = std::io::stdout().lock();
                    for c in &cdrs {
                        let line = serde_json::to_string(c)
                            .map_err(|e| Failure::Run(format!("cannot encode a CDR: {e}")))?;
                        writeln!(out, "{line}")?;
                    }
                    out.flush()?;
                } else {
                    print_cdrs(&cdrs)?;
                }
            }
        }
        Ok(())
    }))
}

/// Loads the configuration, opens the database and runs `op` on a current-thread runtime.
fn run<F, Fut>(db: &DbArgs, op: F) -> Result<(), Failure>
where
    F: FnOnce(Storage, Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let config = Config::load(db.config.as_deref())
        .map_err(|e| Failure::Config(format!("config error: {e}")))?;
    let url = db
        .database_url
        .clone()
        .unwrap_or_else(|| config.database_url());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let storage = Storage::connect(&url).await?;
        let result = op(storage.clone(), config).await;
        storage.close().await;
        result
    })
}

fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(2)
        }
        Err(Failure::Run(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn print_users(users: &[UserRecord]) -> std::io::Result<()> {
    let rows = users
        .iter()
        .map(|u| {
            vec![
                u.username.clone(),
                u.realm.clone(),
                u.display_name.clone().unwrap_or_default(),
                utc(u.created_at_ms),
            ]
        })
        .collect::<Vec<_>>();
    print_table(
        &["USERNAME", "REALM", "DISPLAY NAME", "CREATED (UTC)"],
        &rows,
    )
}

fn print_cdrs(cdrs: &[Cdr]) -> std::io::Result<()> {
    let rows = cdrs
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                utc(c.start_ms),
                c.call_id.clone(),
                c.caller.clone(),
                c.callee.clone(),
                c.cause.clone(),
                c.sip_code.to_string(),
                format!(
                    "{}.{:03}",
                    c.duration_ms / 1000,
                    (c.duration_ms % 1000).abs()
                ),
                format!("{}/{}", c.packets_a_to_b, c.packets_b_to_a),
                format!("{}/{}", c.lost_a_to_b, c.lost_b_to_a),
            ]
        })
        .collect::<Vec<_>>();
    print_table(
        &[
            "ID",
            "START (UTC)",
            "CALL-ID",
            "CALLER",
            "CALLEE",
            "CAUSE",
            "CODE",
            "DURATION s",
            "PKTS A>B/B>A",
            "LOST A>B/B>A",
        ],
        &rows,
    )
}

/// Left-aligned columns separated by two spaces; a header line even when there are no rows.
fn print_table(headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (cell, w) in cells.zip(&widths) {
            s.push_str(cell);
            s.extend(std::iter::repeat_n(
                ' ',
                w.saturating_sub(cell.chars().count()) + 2,
            ));
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&mut headers.iter().copied()))?;
    for row in rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str)))?;
    }
    out.flush()
}

/// `YYYY-MM-DD HH:MM:SS` in UTC for epoch milliseconds.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `switchboard dialplan reload`: `POST /api/v1/dialplans/reload` on the running server (plain
/// HTTP/1.1 over loopback, no client library needed). Exit 0 when the new plan is in force, 2
/// when it was refused (its diagnostics are printed), 1 when the server cannot be reached.
pub fn dialplan_reload(
    config: Option<&std::path::Path>,
    http: Option<std::net::SocketAddr>,
) -> ExitCode {
    use std::io::Read;
    let addr = match http {
        Some(a) => a,
        None => match Config::load(config) {
            Ok(c) => c.http.listen,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        },
    };
    let exchange = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        write!(
            s,
            "POST /api/v1/dialplans/reload HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    let reply = match exchange() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot reach the server at {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(0);
    let report: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    match status {
        200 => {
            println!("dialplan reloaded (version {})", report["version"]);
            ExitCode::SUCCESS
        }
        422 => {
            eprintln!("dialplan refused; the previous plan stays in force:");
            for e in report["errors"].as_array().into_iter().flatten() {
                eprintln!("{}", e.as_str().unwrap_or_default());
            }
            ExitCode::from(2)
        }
        _ => {
            eprintln!("unexpected answer from {addr}: HTTP {status} {body}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_formats_epoch_millis() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59");
    }
}
