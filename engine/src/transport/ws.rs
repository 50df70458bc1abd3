//! SIP over WebSocket (RFC 7118), plain (`WS`) or over TLS (`WSS`): the HTTP upgrade must offer
//! the `sip` subprotocol (otherwise 400 and close), then every text or binary frame carries
//! exactly one SIP message, parsed as a datagram (the frame delimits it; Content-Length may be
//! absent). Pings are answered with pongs and a close with a close (tokio-tungstenite does
//! both); the upgrade is bounded in time (`limits.handshake_timeout_secs`, the TLS handshake
//! included) and in size, frames and messages by `limits.max_message_bytes`, and an idle
//! connection is closed after `limits.tcp_idle_timeout_secs`.

use super::tcp::WRITE_QUEUE;
use crate::config::Limits;
use crate::server::Shared;
use crate::sip::parse_datagram;
use crate::transaction::{Peer, TransportKind};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// The WebSocket subprotocol of SIP (RFC 7118 §4.1).
pub const SUBPROTOCOL: &str = "sip";

/// Accepts WebSocket connections forever; with `tls`, each is a WSS connection whose TLS
/// handshake comes first.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let what = if tls.is_some() { "WSS" } else { "WS" };
    let conn_shared = shared.clone();
    super::accept_secure(listener, shared, what, move |stream, remote| {
        connection(stream, remote, tls.clone(), conn_shared.clone())
    })
    .await
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let limits = &shared.config.limits;
    let handshake = shared.limiter.handshake();
    let timeout = Duration::from_secs(limits.handshake_timeout_secs);
    let cap = limits.max_message_bytes;
    match tls {
        None => {
            let upgraded =
                tokio::time::timeout(timeout, upgrade(Capped::new(stream, cap), limits)).await;
            drop(handshake);
            if let Some(ws) = handshake_outcome(upgraded, remote, &shared) {
                run(ws, remote, TransportKind::Ws, &shared).await;
            }
        }
        Some(acceptor) => {
            let upgraded = tokio::time::timeout(timeout, async {
                let tls = acceptor.accept(stream).await?;
                upgrade(Capped::new(tls, cap), limits).await
            })
            .await;
            drop(handshake);
            if let Some(ws) = handshake_outcome(upgraded, remote, &shared) {
                run(ws, remote, TransportKind::Wss, &shared).await;
            }
        }
    }
}

/// Counts a failed or timed-out upgrade; the stream when it succeeded.
fn handshake_outcome<S: AsyncRead + AsyncWrite + Unpin>(
    r: Result<Result<WebSocketStream<Capped<S>>, io::Error>, tokio::time::error::Elapsed>,
    remote: SocketAddr,
    shared: &Shared,
) -> Option<WebSocketStream<Capped<S>>> {
    let label = match r {
        Ok(Ok(mut ws)) => {
            ws.get_mut().remaining = None; // the size cap was for the upgrade only
            return Some(ws);
        }
        Ok(Err(e)) => {
            tracing::debug!(peer = %remote, error = %e, "WebSocket upgrade failed");
            "ws_handshake_failed"
        }
        Err(_) => {
            tracing::debug!(peer = %remote, "WebSocket upgrade timed out");
            "ws_handshake_timeout"
        }
    };
    shared.metrics.dropped.with_label_values(&[label]).inc();
    None
}

/// The frame limits for SIP: one message per frame, so both are the message size limit; small
/// read buffers (SIP messages are small, connections many) and eager writes.
fn ws_config(limits: &Limits) -> WebSocketConfig {
    let max = limits.max_message_bytes;
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * max)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// True when a `Sec-WebSocket-Protocol` offer lists `sip`.
pub fn offers_sip<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    values.into_iter().any(|v| {
        v.split(|&b| b == b',')
            .any(|p| p.trim_ascii().eq_ignore_ascii_case(SUBPROTOCOL.as_bytes()))
    })
}

/// The HTTP upgrade: refused with 400 unless the client offers the `sip` subprotocol, which
/// the answer then selects.
async fn upgrade<S>(stream: S, limits: &Limits) -> io::Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The callback's signature is tungstenite's (`Callback`): its error type is an HTTP response.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offered = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .map(HeaderValue::as_bytes);
        if !offers_sip(offered) {
            let mut e = ErrorResponse::new(Some(
                "The \"sip\" WebSocket subprotocol is required (RFC 7118)\r\n".into(),
            ));
            *e.status_mut() = StatusCode::BAD_REQUEST;
            return Err(e);
        }
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        Ok(resp)
    };
    tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(ws_config(limits)))
        .await
        .map_err(io::Error::other)
}

/// Serves an upgraded connection: registers it for responses and requests to this flow, reads
/// one SIP message per data frame, writes queued messages as text frames (binary when not
/// UTF-8).
async fn run<S>(
    ws: WebSocketStream<S>,
    remote: SocketAddr,
    kind: TransportKind,
    shared: &Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut frames) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let id = shared.tcp.add(remote, tx);
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            let frame = match Utf8Bytes::try_from(b.clone()) {
                Ok(text) => WsMessage::Text(text),
                Err(_) => WsMessage::Binary(b),
            };
            if sink.send(frame).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let idle = Duration::from_secs(shared.config.limits.tcp_idle_timeout_secs);
    let source = Peer {
        transport: kind,
        addr: remote,
        conn: Some(id),
    };
    loop {
        let frame = match tokio::time::timeout(idle, frames.next()).await {
            Err(_) => {
                shared
                    .metrics
                    .dropped
                    .with_label_values(&["ws_idle_timeout"])
                    .inc();
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::debug!(peer = %remote, error = %e, "WebSocket connection ended");
                if matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)) {
                    shared
                        .metrics
                        .dropped
                        .with_label_values(&["too_large"])
                        .inc();
                }
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let data: Bytes = match frame {
            WsMessage::Text(t) => t.into(),
            WsMessage::Binary(b) => b,
            // Pongs are queued by tungstenite and sent by the next read; after a close the
            // next read sends the close reply and ends the stream.
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Close(_) | WsMessage::Frame(_) => {
                continue
            }
        };
        if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            continue; // a CRLF keep-alive in a frame: nothing to answer
        }
        shared.accept(parse_datagram(&data), source).await;
    }
    shared.tcp.remove(id);
    // The registry held the last sender: the writer drains what is queued, closes, and ends.
    let _ = writer.await;
}

/// A stream whose reads fail once `remaining` bytes have been read, to bound the HTTP upgrade
/// request; `remaining = None` lifts the cap.
struct Capped<S> {
    inner: S,
    remaining: Option<usize>,
}

impl<S> Capped<S> {
    fn new(inner: S, cap: usize) -> Capped<S> {
        Capped {
            inner,
            remaining: Some(cap),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(remaining) = this.remaining else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        if remaining == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "WebSocket upgrade request too large",
            )));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        this.remaining = Some(remaining.saturating_sub(read));
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocol_offers() {
        assert!(offers_sip([&b"sip"[..]]));
        assert!(offers_sip([&b"foo, SIP"[..]]));
        assert!(offers_sip([&b"foo"[..], &b"sip"[..]]));
        assert!(!offers_sip([&b"sipx, chat"[..]]));
        assert!(!offers_sip(std::iter::empty()));
    }
}
