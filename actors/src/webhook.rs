//! HTTP calls the dialplan makes: webhooks (Jambonz-style: call details out, a JSON list of
//! actions back) and prompts fetched from a URL. Plain `http://` through `awc` on the calling
//! actor's own runtime; bodies are size-limited and every request has a timeout.

use std::time::Duration;
use switchboard_dialplans::Method;

/// Largest webhook answer or fetched prompt accepted.
const MAX_BODY: usize = 8 << 20;

fn client(timeout: Duration) -> awc::Client {
    awc::Client::builder().timeout(timeout).finish()
}

/// Sends the webhook and returns its body when it answered 2xx.
pub async fn call(
    url: &str,
    method: Method,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<String, String> {
    let c = client(timeout);
    let res = match method {
        Method::Post => {
            c.post(url)
                .insert_header(("Content-Type", "application/json"))
                .send_body(body.to_string())
                .await
        }
        Method::Get => {
            let mut req = c.get(url);
            if let Some(map) = body.as_object() {
                let flat: Vec<(String, String)> = map
                    .iter()
                    .filter_map(|(k, v)| match v {
                        serde_json::Value::String(s) => Some((k.clone(), s.clone())),
                        serde_json::Value::Number(n) => Some((k.clone(), n.to_string())),
                        serde_json::Value::Bool(b) => Some((k.clone(), b.to_string())),
                        _ => None,
                    })
                    .collect();
                req = req.query(&flat).map_err(|e| format!("query: {e}"))?;
            }
            req.send().await
        }
    };
    let mut res = res.map_err(|e| format!("{url}: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("{url}: HTTP {}", res.status().as_u16()));
    }
    let bytes = res
        .body()
        .limit(MAX_BODY)
        .await
        .map_err(|e| format!("{url}: body: {e}"))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{url}: body is not UTF-8"))
}

/// Fetches a prompt; returns its bytes and a file-type hint from the URL's extension.
pub async fn fetch(url: &str, timeout: Duration) -> Result<(Vec<u8>, Option<String>), String> {
    let mut res = client(timeout)
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("{url}: HTTP {}", res.status().as_u16()));
    }
    let bytes = res
        .body()
        .limit(MAX_BODY)
        .await
        .map_err(|e| format!("{url}: body: {e}"))?;
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path
        .rsplit_once('/')
        .map_or(path, |(_, f)| f)
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    Ok((bytes.to_vec(), ext))
}
