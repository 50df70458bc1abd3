//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document, assembled once from the fragments in
//! `actors/src/openapi/*.json` (each holds `paths` and `components.schemas` for one area; the
//! build script lists them). This module adds `info`, `servers`, the bearer security scheme,
//! the shared `Error` schema, the 401/403 answers of every protected operation and each
//! operation's minimum role (`x-required-role`, from [`super::auth::ROUTES`]).

use super::auth::{access, Access, ROUTES};
use actix_web::http::Method;
use actix_web::HttpResponse;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

include!(concat!(env!("OUT_DIR"), "/openapi_fragments.rs"));

/// The HTTP methods an OpenAPI path item may hold.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Merges the fragments into the served document. Problems (a fragment that does not parse, a
/// path operation or schema defined twice) are returned beside the document, which keeps the
/// first definition.
pub fn assemble(fragments: &[(&str, &str)]) -> (Value, Vec<String>) {
    let mut problems = Vec::new();
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "Every 4xx/5xx answer of the API.",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "What is wrong."},
                "field": {"type": ["string", "null"], "description": "The input field at fault (`authorization` for 401/403), if one."}
            }
        }),
    );
    for (name, text) in fragments {
        let doc: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{name}: not JSON: {e}"));
                continue;
            }
        };
        for (p, item) in doc["paths"].as_object().into_iter().flatten() {
            let Some(item) = item.as_object() else {
                problems.push(format!("{name}: path {p} is not an object"));
                continue;
            };
            let entry = paths
                .entry(p.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            for (k, v) in item {
                match entry.get(k) {
                    Some(_) if METHODS.contains(&k.as_str()) => {
                        problems.push(format!("{name}: {k} {p} is defined twice"));
                    }
                    Some(_) => {}
                    None => entry[k] = v.clone(),
                }
            }
        }
        for (s, schema) in doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if schemas.contains_key(s) {
                problems.push(format!("{name}: schema {s} is defined twice"));
            } else {
                schemas.insert(s.clone(), schema.clone());
            }
        }
    }
    for (p, item) in paths.iter_mut() {
        for m in METHODS {
            let Some(op) = item.get_mut(*m).and_then(Value::as_object_mut) else {
                continue;
            };
            let method =
                Method::from_bytes(m.to_ascii_uppercase().as_bytes()).unwrap_or(Method::GET);
            let responses = op.entry("responses").or_insert_with(|| json!({}));
            match access(&method, p).0 {
                Access::Public => {
                    op.insert("security".into(), json!([]));
                    op.insert("x-required-role".into(), json!("none"));
                }
                a => {
                    for (code, r) in [("401", "Unauthorized"), ("403", "Forbidden")] {
                        if responses.get(code).is_none() {
                            responses[code] =
                                json!({"$ref": format!("#/components/responses/{r}")});
                        }
                    }
                    let role = match a {
                        Access::Role(r) => r.name(),
                        _ => "agent (own) or supervisor",
                    };
                    op.insert("x-required-role".into(), json!(role));
                }
            }
        }
    }
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
    let doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "REST API of the Switchboard telephony and contact-centre engine. Send `Authorization: Bearer <token>`; each operation's `x-required-role` is the least role allowed (read_only < agent < supervisor < admin). Without configured tokens the API is open.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token from `[api]` in the configuration."}
            },
            "responses": {
                "Unauthorized": {"description": "No token, or an unknown one.", "content": error.clone()},
                "Forbidden": {"description": "The token's role may not do this.", "content": error}
            }
        }
    });
    (doc, problems)
}

/// The served document, assembled on first use.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let (doc, problems) = assemble(FRAGMENTS);
        for p in problems {
            tracing::error!(problem = %p, "OpenAPI fragment");
        }
        doc
    })
}

/// `(method, path)` of every operation in `doc`.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (p, item) in doc["paths"].as_object().into_iter().flatten() {
        for m in METHODS {
            if item.get(*m).is_some() {
                out.push((m.to_string(), p.clone()));
            }
        }
    }
    out
}

/// The routes of [`ROUTES`] that name one route (not the `/*` families).
pub fn concrete_routes() -> impl Iterator<Item = (&'static str, &'static str)> {
    ROUTES
        .iter()
        .filter(|(_, p, _)| !p.ends_with("/*"))
        .map(|(m, p, _)| (m.name(), *p))
}

/// The handler.
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_merge_without_problems() {
        let (_, problems) = assemble(FRAGMENTS);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    /// The route table and the document describe the same operations.
    #[test]
    fn every_route_is_documented_and_every_operation_routed() {
        let doc = document();
        let ops = operations(doc);
        for (m, p) in concrete_routes() {
            assert!(
                ops.iter().any(|(om, op)| om == m && op == p),
                "{m} {p} is routed but not in the OpenAPI document"
            );
        }
        for (m, p) in &ops {
            assert!(
                concrete_routes().any(|(rm, rp)| rm == m && rp == p),
                "{m} {p} is documented but not in auth::ROUTES"
            );
        }
    }

    /// Every `$ref` points at a defined component.
    #[test]
    fn references_resolve() {
        fn walk(v: &Value, doc: &Value, bad: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        let ptr = r.trim_start_matches('#');
                        if doc.pointer(ptr).is_none() {
                            bad.push(r.clone());
                        }
                    }
                    m.values().for_each(|x| walk(x, doc, bad));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, doc, bad)),
                _ => {}
            }
        }
        let doc = document();
        let mut bad = Vec::new();
        walk(doc, doc, &mut bad);
        assert!(bad.is_empty(), "unresolved: {bad:?}");
    }

    #[test]
    fn duplicates_are_reported() {
        let f = r#"{"paths": {"/x": {"get": {"responses": {}}}}, "components": {"schemas": {"A": {}}}}"#;
        let (doc, problems) = assemble(&[("a.json", f), ("b.json", f), ("c.json", "{")]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(doc["paths"]["/x"]["get"].is_object());
        assert_eq!(doc["paths"]["/x"]["get"]["x-required-role"], "read_only");
    }
}
