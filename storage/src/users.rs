//! Users and their digest credentials: `HA1 = H(username ":" realm ":" password)` with MD5
//! (RFC 2617) and SHA-256 (RFC 8760). The password itself is never stored.

use crate::{now_ms, Storage, StorageError};
use md5::Md5;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A stored user.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UserRecord {
    /// The digest username (the user part of the AOR).
    pub username: String,
    /// The digest realm.
    pub realm: String,
    /// Lowercase hex MD5 of `username:realm:password`.
    pub ha1_md5: String,
    /// Lowercase hex SHA-256 of `username:realm:password`.
    pub ha1_sha256: String,
    /// A human-readable name, if given.
    pub display_name: Option<String>,
    /// Creation time, epoch milliseconds.
    pub created_at_ms: i64,
}

/// Lowercase hex MD5 of `username:realm:password` (digest HA1, RFC 2617).
pub fn ha1_md5(username: &str, realm: &str, password: &str) -> String {
    hex(&Md5::digest(format!("{username}:{realm}:{password}")))
}

/// Lowercase hex SHA-256 of `username:realm:password` (digest HA1, RFC 8760).
pub fn ha1_sha256(username: &str, realm: &str, password: &str) -> String {
    hex(&Sha256::digest(format!("{username}:{realm}:{password}")))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// The user columns, as a literal (sqlx only runs `'static` SQL without an audit marker).
macro_rules! user_columns {
    () => {
        "username, realm, ha1_md5, ha1_sha256, display_name, created_at_ms"
    };
}

fn user_from_row(row: &AnyRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        username: row.try_get("username")?,
        realm: row.try_get("realm")?,
        ha1_md5: row.try_get("ha1_md5")?,
        ha1_sha256: row.try_get("ha1_sha256")?,
        display_name: row.try_get("display_name")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// Refuses empty names and characters that would make the HA1 input ambiguous or unprintable.
fn check_name(op: &'static str, what: &str, value: &str) -> Result<(), StorageError> {
    if value.is_empty() {
        return Err(StorageError::Invalid {
            op,
            reason: format!("{what} is empty"),
        });
    }
    if value.chars().any(|c| c == ':' || c.is_control()) {
        return Err(StorageError::Invalid {
            op,
            reason: format!("{what} {value:?} contains ':' or a control character"),
        });
    }
    Ok(())
}

impl Storage {
    /// Adds a user with the HA1 hashes of `password`; an existing `(username, realm)` is a
    /// [`StorageError::Conflict`]. An empty `display_name` is stored as none.
    pub async fn add_user(
        &self,
        username: &str,
        realm: &str,
        password: &str,
        display_name: Option<&str>,
    ) -> Result<(), StorageError> {
        const OP: &str = "add_user";
        check_name(OP, "username", username)?;
        check_name(OP, "realm", realm)?;
        if password.is_empty() {
            return Err(StorageError::Invalid {
                op: OP,
                reason: "password is empty".into(),
            });
        }
        let display_name = display_name.filter(|d| !d.is_empty());
        let done = sqlx::query(
            "INSERT INTO users (username, realm, ha1_md5, ha1_sha256, display_name, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username, realm) DO NOTHING",
        )
        .bind(username)
        .bind(realm)
        .bind(ha1_md5(username, realm, password))
        .bind(ha1_sha256(username, realm, password))
        .bind(display_name)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        if done.rows_affected() == 0 {
            return Err(StorageError::Conflict {
                op: OP,
                what: format!("user {username:?} in realm {realm:?}"),
            });
        }
        Ok(())
    }

    /// The user `username` in `realm`, if any.
    pub async fn get_user(
        &self,
        username: &str,
        realm: &str,
    ) -> Result<Option<UserRecord>, StorageError> {
        const OP: &str = "get_user";
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1 AND realm = $2"
        ))
        .bind(username)
        .bind(realm)
        .fetch_optional(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        row.as_ref()
            .map(user_from_row)
            .transpose()
            .map_err(StorageError::at(OP))
    }

    /// Every user, ordered by realm then username.
    pub async fn list_users(&self) -> Result<Vec<UserRecord>, StorageError> {
        const OP: &str = "list_users";
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY realm, username"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(StorageError::at(OP))?;
        rows.iter()
            .map(user_from_row)
            .collect::<Result<_, _>>()
            .map_err(StorageError::at(OP))
    }

    /// Removes a user; `false` when there was none.
    pub async fn remove_user(&self, username: &str, realm: &str) -> Result<bool, StorageError> {
        const OP: &str = "remove_user";
        let done = sqlx::query("DELETE FROM users WHERE username = $1 AND realm = $2")
            .bind(username)
            .bind(realm)
            .execute(self.pool())
            .await
            .map_err(StorageError::at(OP))?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_known_vectors() {
        // `printf 'alice:switchboard:secret' | md5sum` / `sha256sum`
        assert_eq!(
            ha1_md5("alice", "switchboard", "secret"),
            "04edd9ed7517a1d90445b0c86f283b19"
        );
        assert_eq!(
            ha1_sha256("alice", "switchboard", "secret"),
            "0510c3df272bafea598ccad1f8335bec4b835330cb7be697869e62c466dd1809"
        );
        // RFC 2617 §3.5 example: Mufasa / testrealm@host.com / "Circle Of Life".
        assert_eq!(
            ha1_md5("Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
    }

    #[test]
    fn names_with_colons_are_refused() {
        assert!(check_name("t", "username", "a:b").is_err());
        assert!(check_name("t", "username", "").is_err());
        assert!(check_name("t", "username", "alice").is_ok());
    }
}
