//! `GET /api/v1/events`: the event stream over WebSocket (with an `Upgrade: websocket` request)
//! or as JSON pages (without).
//!
//! Query parameters: `since` (a sequence number: deliver events after it; over WebSocket,
//! without `since` the stream starts live at the head), `types` (`call.*,agent.state_changed`;
//! default all), `limit` (JSON pages only: 1–1000, default 100).
//!
//! Over WebSocket each event is one text frame in the wire format. A consumer whose buffer
//! fills (it reads too slowly) is closed with code 4008 and the reason
//! `consumer too slow: reconnect with since=N`, N being the last event it was sent; replay
//! failures close with 1011. The JSON page is `{"events": [...], "next_since": N}`.

use super::{Events, Filter, Next, Subscription};
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use std::collections::HashMap;
use std::time::Duration;

/// Close code for a consumer cut off because it fell behind.
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Most events in one JSON page.
const MAX_LIMIT: usize = 1_000;
/// How long a close frame may wait behind unread data before the connection is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// The kernel send buffer of a stream consumer's socket. Left to autotuning, loopback's
/// 64 KiB segments let it grow to megabytes, which would hide a stalled consumer from the bus
/// for thousands of events; capped, a consumer's lag shows in its bounded buffer.
const STREAM_SNDBUF: libc::c_int = 64 * 1024;

/// The socket of an HTTP connection, recorded by the server's `on_connect` hook
/// ([`record_socket`]) so that a stream can cap its send buffer.
#[derive(Clone, Copy, Debug)]
pub struct ConnSocket(std::os::fd::RawFd);

/// `HttpServer::on_connect` hook: remembers each TCP connection's socket.
pub fn record_socket(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use std::os::fd::AsRawFd;
    if let Some(s) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        ext.insert(ConnSocket(s.as_raw_fd()));
    }
}

fn cap_send_buffer(req: &HttpRequest) {
    if let Some(ConnSocket(fd)) = req.conn_data::<ConnSocket>().copied() {
        // SAFETY: the fd is this request's connection, open for as long as the request is;
        // setsockopt only reads the int passed by pointer.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&STREAM_SNDBUF as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!("cannot cap the event stream's send buffer");
        }
    }
}

/// Registers the route (full path, no scope).
pub fn configure(cfg: &mut web::ServiceConfig, events: Events) {
    cfg.app_data(web::Data::new(events))
        .route("/api/v1/events", web::get().to(get_events));
}

fn bad(field: &str, error: String) -> Box<HttpResponse> {
    Box::new(HttpResponse::BadRequest().json(serde_json::json!({ "error": error, "field": field })))
}

/// The parsed query.
struct Query {
    since: Option<u64>,
    filter: Filter,
    limit: usize,
}

fn parse_query(qs: &str) -> Result<Query, Box<HttpResponse>> {
    let map = web::Query::<HashMap<String, String>>::from_query(qs)
        .map_err(|e| bad("query", format!("bad query string: {e}")))?
        .into_inner();
    let since = match map.get("since") {
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            bad(
                "since",
                format!("since must be a sequence number, not {s:?}"),
            )
        })?),
        None => None,
    };
    let filter = match map.get("types") {
        Some(t) => Filter::parse(t).map_err(|e| bad("types", e.to_string()))?,
        None => Filter::all(),
    };
    let limit = match map.get("limit") {
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(bad("limit", format!("limit must be 1..={MAX_LIMIT}"))),
        },
        None => 100,
    };
    Ok(Query {
        since,
        filter,
        limit,
    })
}

async fn get_events(
    req: HttpRequest,
    payload: web::Payload,
    bus: web::Data<Events>,
) -> HttpResponse {
    let q = match parse_query(req.query_string()) {
        Ok(q) => q,
        Err(resp) => return *resp,
    };
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        let (resp, session, stream) = match actix_ws::handle(&req, payload) {
            Ok(h) => h,
            Err(e) => return HttpResponse::from_error(e),
        };
        cap_send_buffer(&req);
        let since = q.since.unwrap_or_else(|| bus.head());
        let sub = bus.subscribe(since, q.filter, bus.consumer_buffer());
        actix_web::rt::spawn(stream_to(sub, session, stream));
        return resp;
    }
    match bus.page(q.since.unwrap_or(0), q.limit, &q.filter).await {
        Ok((events, next)) => {
            let mut body = String::from("{\"events\":[");
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&e.frame);
            }
            body.push_str(&format!("],\"next_since\":{next}}}"));
            HttpResponse::Ok()
                .content_type("application/json")
                .body(body)
        }
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "error": format!("reading events: {e}"), "field": null })),
    }
}

/// Feeds one WebSocket consumer until it leaves, is cut off, or replay fails.
async fn stream_to(mut sub: Subscription, mut session: Session, mut stream: MessageStream) {
    // The last event handed to the socket: where the consumer resumes.
    let mut sent = sub.last();
    let reason = loop {
        tokio::select! {
            msg = stream.recv() => match msg {
                Some(Ok(Message::Ping(b))) => {
                    if session.pong(&b).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = session.close(None).await;
                    return;
                }
                Some(Ok(_)) => {}
            },
            next = sub.next() => match next {
                Next::Event(e) => {
                    let ok = tokio::select! {
                        r = session.text(e.frame.clone()) => r.is_ok(),
                        _ = sub.cut_off() => break too_slow(sent),
                    };
                    if !ok {
                        return;
                    }
                    sent = e.seq;
                }
                Next::Cut => break too_slow(sent),
                Next::Failed(why) => {
                    tracing::warn!(reason = %why, "event stream consumer closed");
                    break CloseReason {
                        code: CloseCode::Error,
                        description: Some(format!("{why}: reconnect with since={sent}")),
                    };
                }
            },
        }
    };
    drop(sub);
    // The close frame queues behind whatever the consumer has not read yet.
    let _ = tokio::time::timeout(CLOSE_WAIT, session.close(Some(reason))).await;
}

fn too_slow(sent: u64) -> CloseReason {
    tracing::info!(since = sent, "event stream consumer too slow; cut off");
    CloseReason {
        code: CloseCode::Other(CLOSE_TOO_SLOW),
        description: Some(format!("consumer too slow: reconnect with since={sent}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_errors_name_the_field() {
        let field = |qs: &str| match parse_query(qs) {
            Ok(_) => None,
            Err(r) => Some(r.status().as_u16()),
        };
        assert_eq!(field("since=12&types=call.*&limit=5"), None);
        assert_eq!(field("since=-1"), Some(400));
        assert_eq!(field("types=CALL"), Some(400));
        assert_eq!(field("limit=0"), Some(400));
        assert_eq!(field("limit=1001"), Some(400));
    }
}
