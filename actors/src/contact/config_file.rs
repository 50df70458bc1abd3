//! The contact-centre file (`[contact_centre] config_file`, TOML): queues, agents and the
//! workflow created or updated at start. Each entry goes through the REST API's own requests
//! ([`Request::CreateQueue`], [`Request::UpdateQueue`], …), so it is checked exactly as the API
//! checks it; the first error stops the start and names the file and the key
//! (`agents[1].queues[0].queue`). Entries absent from the file (created through the API) stay.

use super::directory::{AgentDef, QueueDef};
use super::requests::{ContactError, Request};
use super::ContactCentre;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use switchboard_engine::config::{ConfigError, ContactCentreConfig};

/// The demo file compiled into the binary (`config_file = "builtin:demo"`).
pub const DEMO_FILE: &str = include_str!("../../../dialplans/examples/contact-centre.toml");

/// The file's documents: the REST API's bodies.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentreFile {
    /// `[[queues]]`: `POST /api/v1/queues` bodies.
    #[serde(default)]
    pub queues: Vec<QueueDef>,
    /// `[[agents]]`: `POST /api/v1/agents` bodies.
    #[serde(default)]
    pub agents: Vec<AgentDef>,
    /// `[workflow]`: the `PUT /api/v1/workflow` body.
    #[serde(default)]
    pub workflow: Option<Value>,
}

/// What applying a file changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries (queues, agents, workflow) created.
    pub created: usize,
    /// Entries that existed and differed.
    pub updated: usize,
    /// Entries already as the file says.
    pub unchanged: usize,
}

/// Reads and parses the configured file: `None` when none is configured.
pub fn read(source: &str) -> Result<Option<(String, CentreFile)>, ConfigError> {
    let (name, text) = match source {
        "" => return Ok(None),
        "builtin:demo" => (source.to_string(), DEMO_FILE.to_string()),
        path => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: path.to_string(),
                key: "-".into(),
                reason: format!("cannot read: {e}"),
            })?;
            (path.to_string(), text)
        }
    };
    let doc = ContactCentreConfig::parse_file::<CentreFile>(&text, &name)?;
    Ok(Some((name, doc)))
}

fn error(file: &str, prefix: &str, e: &ContactError) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        key: match &e.field {
            Some(f) if f != "-" && f != "." => format!("{prefix}.{f}"),
            _ => prefix.to_string(),
        },
        reason: e.error.clone(),
    }
}

/// Names given twice in one list.
fn duplicates<'a>(
    file: &str,
    list: &str,
    names: impl Iterator<Item = &'a String>,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, n) in names.enumerate() {
        if !seen.insert(n) {
            return Err(ConfigError {
                file: file.to_string(),
                key: format!("{list}[{i}].name"),
                reason: format!("`{n}` is defined twice"),
            });
        }
    }
    Ok(())
}

enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// Creates or updates one entry: `get` answers the current document (404: none), whose
/// `config` is compared with `want`.
async fn upsert(
    cc: &ContactCentre,
    get: Request,
    want: Value,
    create: Request,
    update: Request,
) -> Result<Outcome, ContactError> {
    match cc.request(get).await {
        Ok(v) if v["config"] == want => Ok(Outcome::Unchanged),
        Ok(_) => cc.request(update).await.map(|_| Outcome::Updated),
        Err(e) if e.status == 404 => cc.request(create).await.map(|_| Outcome::Created),
        Err(e) => Err(e),
    }
}

/// Applies the file: queues, then agents (which name queues), then the workflow. Answers once
/// everything is stored.
pub async fn apply(
    cc: &ContactCentre,
    file: &str,
    doc: CentreFile,
) -> Result<Applied, ConfigError> {
    duplicates(file, "queues", doc.queues.iter().map(|q| &q.name))?;
    duplicates(file, "agents", doc.agents.iter().map(|a| &a.name))?;
    let mut applied = Applied::default();
    let mut count = |o: Outcome| match o {
        Outcome::Created => applied.created += 1,
        Outcome::Updated => applied.updated += 1,
        Outcome::Unchanged => applied.unchanged += 1,
    };
    for (i, q) in doc.queues.into_iter().enumerate() {
        let prefix = format!("queues[{i}]");
        let want = serde_json::to_value(&q).unwrap_or(Value::Null);
        let o = upsert(
            cc,
            Request::GetQueue(q.name.clone()),
            want,
            Request::CreateQueue(q.clone()),
            Request::UpdateQueue(q.name.clone(), q),
        )
        .await
        .map_err(|e| error(file, &prefix, &e))?;
        count(o);
    }
    for (i, a) in doc.agents.into_iter().enumerate() {
        let prefix = format!("agents[{i}]");
        let want = serde_json::to_value(&a).unwrap_or(Value::Null);
        let o = upsert(
            cc,
            Request::GetAgent(a.name.clone()),
            want,
            Request::CreateAgent(a.clone()),
            Request::UpdateAgent(a.name.clone(), a),
        )
        .await
        .map_err(|e| error(file, &prefix, &e))?;
        count(o);
    }
    if let Some(w) = doc.workflow {
        let current = cc
            .request(Request::GetWorkflow)
            .await
            .map_err(|e| error(file, "workflow", &e))?;
        if current == w {
            count(Outcome::Unchanged);
        } else {
            cc.request(Request::SetWorkflow(w))
                .await
                .map_err(|e| error(file, "workflow", &e))?;
            count(Outcome::Updated);
        }
    }
    cc.flush().await;
    tracing::info!(
        file,
        created = applied.created,
        updated = applied.updated,
        unchanged = applied.unchanged,
        "contact-centre file applied"
    );
    Ok(applied)
}
