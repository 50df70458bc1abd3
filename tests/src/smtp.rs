//! A local SMTP sink for tests: a real TCP listener on 127.0.0.1 speaking enough SMTP
//! (RFC 5321) for a real client such as lettre: greeting, EHLO/HELO, MAIL, RCPT, DATA (with
//! dot-unstuffing), RSET, NOOP, QUIT. Every accepted message is kept with its envelope; tests
//! wait for them with [`SmtpSink::wait_for`]. Plain text only (no STARTTLS, no AUTH).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One message the sink accepted.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    /// `MAIL FROM` address.
    pub from: String,
    /// `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The message as sent after `DATA` (headers, blank line, body), CRLF line ends.
    pub data: String,
}

impl Mail {
    /// The value of header `name` (case-insensitive; folded lines joined).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = found.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    found = Some(v.trim().to_string());
                }
            }
        }
        found
    }

    /// The body (after the blank line).
    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default()
    }
}

/// A running sink; stops accepting when dropped (the listener thread ends with the process).
pub struct SmtpSink {
    addr: SocketAddr,
    mails: Arc<(Mutex<Vec<Mail>>, Condvar)>,
}

impl SmtpSink {
    /// Listens on a free loopback port.
    pub fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind SMTP sink");
        let addr = listener.local_addr().expect("sink address");
        let mails: Arc<(Mutex<Vec<Mail>>, Condvar)> = Arc::default();
        let m = mails.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let m = m.clone();
                std::thread::spawn(move || {
                    let _ = session(conn, &m);
                });
            }
        });
        SmtpSink { addr, mails }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Waits until `pred` holds for the messages received (or `timeout`); returns them.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Mail]) -> bool) -> Vec<Mail> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.mails;
        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
        while !pred(&g) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            g = cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        g.clone()
    }
}

fn angle(arg: &str) -> String {
    let a = arg.trim();
    let a = a.split_once(':').map_or(a, |x| x.1).trim();
    let a = a.split(' ').next().unwrap_or("");
    a.trim_start_matches('<').trim_end_matches('>').to_string()
}

fn session(conn: TcpStream, mails: &(Mutex<Vec<Mail>>, Condvar)) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    out.write_all(b"220 sink.test ESMTP ready\r\n")?;
    let mut cur = Mail::default();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']);
        let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => out.write_all(b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")?,
            "HELO" => out.write_all(b"250 sink.test\r\n")?,
            "MAIL" => {
                cur = Mail {
                    from: angle(cmd),
                    ..Mail::default()
                };
                out.write_all(b"250 OK\r\n")?;
            }
            "RCPT" => {
                cur.to.push(angle(cmd));
                out.write_all(b"250 OK\r\n")?;
            }
            "DATA" => {
                out.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l)? == 0 {
                        return Ok(());
                    }
                    let content = l.trim_end_matches(['\r', '\n']);
                    if content == "." {
                        break;
                    }
                    let content = content.strip_prefix('.').unwrap_or(content);
                    data.push_str(content);
                    data.push_str("\r\n");
                }
                cur.data = data;
                let (lock, cv) = mails;
                lock.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(std::mem::take(&mut cur));
                cv.notify_all();
                out.write_all(b"250 OK queued\r\n")?;
            }
            "RSET" => {
                cur = Mail::default();
                out.write_all(b"250 OK\r\n")?;
            }
            "NOOP" => out.write_all(b"250 OK\r\n")?,
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"502 command not implemented\r\n")?,
        }
    }
}
