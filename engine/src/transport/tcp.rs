//! The TCP transport: accepts connections, frames messages with [`StreamFramer`], answers
//! CRLF keep-alives, enforces the connection, size and idle limits, and keeps a registry of
//! open connections so responses and later requests reuse them. The registry holds every
//! connection-oriented flow (TCP, TLS, WS, WSS), and [`run_stream`] also serves TLS streams.

use super::framing::{Frame, StreamFramer};
use crate::server::Shared;
use crate::sip::build::response_with_reason;
use crate::sip::{parse_stream_message, Message};
use crate::transaction::{Peer, TransportKind};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Pending writes per connection before the writer applies back-pressure (also used by the
/// TLS and WebSocket transports).
pub(crate) const WRITE_QUEUE: usize = 1024;

/// After a framing error the connection stays open this long, so answers to the messages read
/// before the error (still in a shard) are written before it closes.
const LINGER: Duration = Duration::from_millis(500);

/// Open connections of every connection-oriented transport, by id and by remote address.
pub struct Registry {
    conns: Mutex<HashMap<u64, (SocketAddr, mpsc::Sender<Bytes>)>>,
    next_id: AtomicU64,
    gauge: prometheus::IntGauge,
}

impl Registry {
    /// An empty registry that reports its size on `gauge`.
    pub fn new(gauge: prometheus::IntGauge) -> Registry {
        Registry {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            gauge,
        }
    }

    pub(crate) fn add(&self, remote: SocketAddr, tx: mpsc::Sender<Bytes>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.conns.lock() {
            m.insert(id, (remote, tx));
            self.gauge.set(m.len() as i64);
        }
        id
    }

    pub(crate) fn remove(&self, id: u64) {
        if let Ok(mut m) = self.conns.lock() {
            m.remove(&id);
            self.gauge.set(m.len() as i64);
        }
    }

    /// Whether connection `id` is still open (RFC 5626-style flows: a binding made over a
    /// connection lives as long as it).
    pub fn is_open(&self, id: u64) -> bool {
        self.conns.lock().is_ok_and(|m| m.contains_key(&id))
    }

    /// The number of open connections.
    pub fn len(&self) -> usize {
        self.conns.lock().map_or(0, |m| m.len())
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The open connection to `remote`, else a new one registered before it is up (see
    /// [`Reserved`]), in one step so that two shards do not both open one.
    pub(crate) fn find_or_reserve(&self, remote: SocketAddr) -> Result<u64, Reserved> {
        let Ok(mut m) = self.conns.lock() else {
            // A poisoned lock: no registry; the caller's message is lost like on a dead flow.
            return Ok(u64::MAX);
        };
        if let Some((id, _)) = m.iter().find(|(_, (a, _))| *a == remote) {
            return Ok(*id);
        }
        let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        m.insert(id, (remote, tx.clone()));
        self.gauge.set(m.len() as i64);
        Err((id, tx, rx))
    }

    /// The id of an open connection to `remote`, for connection reuse (RFC 3261 §18.1.1).
    pub fn find(&self, remote: SocketAddr) -> Option<u64> {
        self.conns
            .lock()
            .ok()?
            .iter()
            .find(|(_, (a, _))| *a == remote)
            .map(|(id, _)| *id)
    }

    /// Queues bytes on a connection; silently dropped when it has closed.
    pub async fn send(&self, id: u64, bytes: Bytes) {
        let tx = self
            .conns
            .lock()
            .ok()
            .and_then(|m| m.get(&id).map(|(_, tx)| tx.clone()));
        if let Some(tx) = tx {
            let _ = tx.send(bytes).await;
        }
    }
}

/// Binds a TCP listener.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Accepts connections forever.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.tcp.len() >= shared.config.limits.max_tcp_connections {
            shared
                .metrics
                .dropped
                .with_label_values(&["tcp_connection_limit"])
                .inc();
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, remote, shared.clone()));
    }
}

async fn connection(stream: TcpStream, remote: SocketAddr, shared: Arc<Shared>) {
    let (rd, wr) = stream.into_split();
    run_stream(rd, wr, remote, TransportKind::Tcp, shared).await;
}

/// Runs one framed SIP stream connection (TCP, or TLS once the handshake is done) until it
/// closes: registers it, frames what `rd` delivers, answers CRLF pings, and writes what is
/// queued for it to `wr`, with the idle, message-time and size limits of `[limits]`.
pub(crate) async fn run_stream<R, W>(
    rd: R,
    wr: W,
    remote: SocketAddr,
    kind: TransportKind,
    shared: Arc<Shared>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let id = shared.tcp.add(remote, tx.clone());
    serve_stream(rd, wr, remote, kind, shared, (id, tx, rx)).await;
}

/// A connection registered before it is up (an outbound connection being opened): its id, and
/// both ends of its write queue. Messages queued meanwhile are written once it is up.
pub(crate) type Reserved = (u64, mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>);

/// [`run_stream`] for a connection already in the registry.
pub(crate) async fn serve_stream<R, W>(
    mut rd: R,
    mut wr: W,
    remote: SocketAddr,
    kind: TransportKind,
    shared: Arc<Shared>,
    (id, tx, mut rx): Reserved,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
            // TLS buffers records a blocked socket did not take: flush once the queue is empty
            // (a no-op for plain TCP).
            if rx.is_empty() && wr.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let limits = &shared.config.limits;
    let idle = Duration::from_secs(limits.tcp_idle_timeout_secs);
    let msg_timeout = Duration::from_secs(limits.tcp_message_timeout_secs);
    let mut framer = StreamFramer::new(limits.max_message_bytes);
    let mut partial_since: Option<Instant> = None;
    let source = Peer {
        transport: kind,
        addr: remote,
        conn: Some(id),
    };
    'conn: loop {
        let wait = match partial_since {
            Some(t) => msg_timeout.saturating_sub(t.elapsed()),
            None => idle,
        };
        let read = tokio::time::timeout(wait, rd.read_buf(framer.buffer_mut())).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Err(_) => {
                shared
                    .metrics
                    .dropped
                    .with_label_values(&[if partial_since.is_some() {
                        "tcp_message_timeout"
                    } else {
                        "tcp_idle_timeout"
                    }])
                    .inc();
                break;
            }
            Ok(Ok(_)) => {}
        }
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Ping)) => {
                    let _ = tx.send(Bytes::from_static(b"\r\n")).await;
                }
                Ok(Some(Frame::Message(m))) => {
                    let parsed = parse_stream_message(&m);
                    shared.accept(parsed, source).await;
                }
                Ok(None) => break,
                Err(e) => {
                    // The stream cannot be re-synchronised: answer if we can, then close.
                    if let Some(head) = e.head {
                        let req = match parse_stream_message(&head) {
                            Ok(Message::Request(r)) => Some(r),
                            Err(pe) => pe.request.map(|r| *r),
                            Ok(Message::Response(_)) => None,
                        };
                        let answerable = |r: &crate::sip::Request| {
                            r.method != crate::sip::Method::Ack
                                && r.headers.count(&crate::sip::HeaderName::Via) > 0
                        };
                        if let Some(mut req) = req.filter(answerable) {
                            crate::transport::route::stamp_received(&mut req, remote);
                            let resp = response_with_reason(&req, e.status, e.reason);
                            shared.send_response(&resp, source).await;
                        }
                    }
                    shared
                        .metrics
                        .parse_errors
                        .with_label_values(&[&e.status.to_string()])
                        .inc();
                    linger(&mut rd).await;
                    break 'conn;
                }
            }
        }
        partial_since = match (framer.has_partial(), partial_since) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
    }
    shared.tcp.remove(id);
    drop(tx);
    let _ = writer.await;
}

/// Reads and discards input for [`LINGER`]: closing a socket with unread input makes the kernel
/// send RST, and the peer would lose the answers already written.
async fn linger<R: AsyncRead + Unpin>(rd: &mut R) {
    let until = tokio::time::Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, rd.read(&mut sink)).await {
        if n == 0 {
            break;
        }
    }
}
