//! `[api]`: the REST API's bearer tokens and their roles.
//!
//! ```toml
//! [api]
//! tokens_file = "/etc/switchboard/tokens.toml"   # optional, same `[[tokens]]` shape
//! [[api.tokens]]
//! token = "s3cret-admin-token"
//! role = "admin"
//! [[api.tokens]]
//! token = "alice-desk-token"
//! role = "agent"
//! agent = "alice"
//! ```
//!
//! The environment variable `SWITCHBOARD_API_TOKEN`, when set and not empty, adds one admin
//! token. With no token at all the API is open (development mode).

use serde::Deserialize;
use std::path::PathBuf;

/// The environment variable holding an extra admin token.
pub const TOKEN_ENV: &str = "SWITCHBOARD_API_TOKEN";

/// What a token may do, weakest first: each role may do everything the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRole {
    /// Reads only (`GET`).
    ReadOnly,
    /// Reads, and acts on its own agent (login, logout, state, desktop WebSocket).
    Agent,
    /// Supervisor actions: supervision, moving interactions, any agent's state.
    Supervisor,
    /// Everything, including configuration changes.
    Admin,
}

impl ApiRole {
    /// The name used in the configuration and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            ApiRole::ReadOnly => "read_only",
            ApiRole::Agent => "agent",
            ApiRole::Supervisor => "supervisor",
            ApiRole::Admin => "admin",
        }
    }
}

/// One bearer token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenConfig {
    /// The secret sent as `Authorization: Bearer <token>`.
    pub token: String,
    /// Its role.
    pub role: ApiRole,
    /// For an `agent` token: the agent (contact-centre agent name) it acts as.
    #[serde(default)]
    pub agent: Option<String>,
}

/// The `[api]` section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Tokens defined inline.
    pub tokens: Vec<ApiTokenConfig>,
    /// A TOML file with more `[[tokens]]` (read at start), so secrets can live apart from the
    /// configuration.
    pub tokens_file: Option<PathBuf>,
    /// Extra paths served without a token (exact paths, or prefixes ending in `*`), besides
    /// `/api/v1/openapi.json`.
    pub public_paths: Vec<String>,
}

/// The shape of `tokens_file`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<ApiTokenConfig>,
}

impl ApiConfig {
    /// Checks one token list; the error is `(key, reason)`.
    fn check(list: &[ApiTokenConfig], key: &str) -> Result<(), (String, String)> {
        for (i, t) in list.iter().enumerate() {
            if t.token.trim().is_empty() || t.token.chars().any(|c| c.is_whitespace()) {
                return Err((
                    format!("{key}[{i}].token"),
                    "must be non-empty, without spaces".into(),
                ));
            }
            match (&t.agent, t.role) {
                (None, ApiRole::Agent) => {
                    return Err((
                        format!("{key}[{i}].agent"),
                        "an agent token needs the agent it acts as".into(),
                    ))
                }
                (Some(a), _) if a.is_empty() => {
                    return Err((format!("{key}[{i}].agent"), "must not be empty".into()))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Validates the inline tokens; the error is `(key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        Self::check(&self.tokens, "api.tokens")?;
        for (i, p) in self.public_paths.iter().enumerate() {
            if !p.starts_with('/') {
                return Err((
                    format!("api.public_paths[{i}]"),
                    "must start with `/`".into(),
                ));
            }
        }
        Ok(())
    }

    /// Every token: inline, from `tokens_file` and from [`TOKEN_ENV`] (`env` is its value).
    /// Errors name the file or key.
    pub fn all_tokens(&self, env: Option<&str>) -> Result<Vec<ApiTokenConfig>, String> {
        let mut all = self.tokens.clone();
        if let Some(f) = &self.tokens_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("api.tokens_file {}: {e}", f.display()))?;
            let parsed: TokensFile = toml::from_str(&text)
                .map_err(|e| format!("api.tokens_file {}: {}", f.display(), e.message()))?;
            Self::check(&parsed.tokens, "tokens")
                .map_err(|(k, r)| format!("api.tokens_file {}: key `{k}`: {r}", f.display()))?;
            all.extend(parsed.tokens);
        }
        if let Some(t) = env.map(str::trim).filter(|t| !t.is_empty()) {
            all.push(ApiTokenConfig {
                token: t.to_string(),
                role: ApiRole::Admin,
                agent: None,
            });
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(ApiRole::ReadOnly < ApiRole::Agent);
        assert!(ApiRole::Agent < ApiRole::Supervisor);
        assert!(ApiRole::Supervisor < ApiRole::Admin);
    }

    #[test]
    fn agent_tokens_need_an_agent() {
        let c: ApiConfig =
            toml::from_str("[[tokens]]\ntoken = \"x\"\nrole = \"agent\"\n").expect("parses");
        let (key, _) = c.validate().expect_err("refused");
        assert_eq!(key, "api.tokens[0].agent");
    }

    #[test]
    fn file_and_env_tokens_are_added() {
        let f = std::env::temp_dir().join(format!("sb-tokens-{}.toml", std::process::id()));
        std::fs::write(&f, "[[tokens]]\ntoken = \"ro\"\nrole = \"read_only\"\n").expect("write");
        let c = ApiConfig {
            tokens_file: Some(f),
            ..ApiConfig::default()
        };
        let all = c.all_tokens(Some("envtok")).expect("loads");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].role, ApiRole::ReadOnly);
        assert_eq!(all[1].token, "envtok");
        assert_eq!(all[1].role, ApiRole::Admin);
        if let Some(f) = &c.tokens_file {
            let _ = std::fs::remove_file(f);
        }
    }
}
