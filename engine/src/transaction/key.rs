//! Transaction identity: the opaque [`TxKey`] handle the TU holds, the matching keys of
//! RFC 3261 §17.1.3 (responses) and §17.2.3 (requests, with the RFC 2543 fallback), and
//! [`new_branch`].

use crate::sip::via::MAGIC_COOKIE;
use crate::sip::{Method, Request, Response, SipHeaders, ViaRef};
use std::fmt;

/// Which of the four state machines a transaction runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxKind {
    /// INVITE client transaction (RFC 3261 §17.1.1, RFC 6026).
    ClientInvite,
    /// Non-INVITE client transaction (RFC 3261 §17.1.2).
    ClientNonInvite,
    /// INVITE server transaction (RFC 3261 §17.2.1, RFC 6026).
    ServerInvite,
    /// Non-INVITE server transaction (RFC 3261 §17.2.2).
    ServerNonInvite,
}

impl TxKind {
    /// True for server transactions.
    pub fn is_server(self) -> bool {
        matches!(self, TxKind::ServerInvite | TxKind::ServerNonInvite)
    }

    /// True for INVITE transactions.
    pub fn is_invite(self) -> bool {
        matches!(self, TxKind::ClientInvite | TxKind::ServerInvite)
    }
}

/// The handle of one transaction. Ids are never reused within one layer, so a stale key
/// simply finds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxKey {
    id: u64,
    kind: TxKind,
}

impl TxKey {
    pub(crate) fn new(id: u64, kind: TxKind) -> TxKey {
        TxKey { id, kind }
    }

    /// The layer-unique number of the transaction (increasing in creation order).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The kind of state machine.
    pub fn kind(&self) -> TxKind {
        self.kind
    }
}

impl fmt::Display for TxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            TxKind::ClientInvite => "ci",
            TxKind::ClientNonInvite => "cn",
            TxKind::ServerInvite => "si",
            TxKind::ServerNonInvite => "sn",
        };
        write!(f, "{k}{}", self.id)
    }
}

/// A fresh RFC 3261 branch: the magic cookie `z9hG4bK` and 96 random bits in hex.
pub fn new_branch() -> String {
    let bits: u128 = rand::random();
    let mut s = String::with_capacity(MAGIC_COOKIE.len() + 24);
    s.push_str(MAGIC_COOKIE);
    crate::dialog::push_hex(&mut s, (bits >> 32) as u64, 16);
    crate::dialog::push_hex(&mut s, bits as u64 & 0xffff_ffff, 8);
    s
}

/// What the layer's index is keyed by: the matching fields of a transaction, encoded into
/// one byte string (a kind byte, then the fields, each variable-length one prefixed with its
/// length, so two different field tuples never encode alike). Keys are encoded into a buffer
/// the layer reuses, so looking a message up allocates nothing; only a new transaction stores
/// its key.
///
/// The kinds:
/// * server transaction created by a request with a magic-cookie branch (§17.2.3): branch,
///   sent-by (host compared case-insensitively, port), method and Call-ID. The Call-ID is
///   compared too: two requests from a broken client that reuse a branch across calls (RFC
///   4475's `unkscm` and `novelsc` do) are not retransmissions of each other;
/// * server transaction created by a request without one (RFC 2543 matching): Request-URI,
///   Call-ID, CSeq number, method, From tag, To tag and top Via. The To tag is the one of the
///   request that created the transaction; an ACK for a non-2xx answer is looked up with the
///   INVITE's To tag and then checked against the response's;
/// * client transaction: the branch we put in the top Via and the method (§17.1.3).
pub(crate) type MatchKey = std::sync::Arc<[u8]>;

/// Kind byte of a magic-cookie server key.
const SERVER: u8 = b'S';
/// Kind byte of an RFC 2543 server key.
const SERVER_2543: u8 = b'R';
/// Kind byte of a client key.
const CLIENT: u8 = b'C';

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u64).to_le_bytes());
    out.extend_from_slice(field);
}

fn put_opt(out: &mut Vec<u8>, field: Option<&str>) {
    match field {
        None => out.push(0),
        Some(f) => {
            out.push(1);
            put(out, f.as_bytes());
        }
    }
}

fn put_method(out: &mut Vec<u8>, method: &Method) {
    let code = match method {
        Method::Invite => 1,
        Method::Ack => 2,
        Method::Bye => 3,
        Method::Cancel => 4,
        Method::Options => 5,
        Method::Register => 6,
        Method::Info => 7,
        Method::Message => 8,
        Method::Notify => 9,
        Method::Prack => 10,
        Method::Publish => 11,
        Method::Refer => 12,
        Method::Subscribe => 13,
        Method::Update => 14,
        Method::Extension(token) => {
            out.push(0xff);
            put(out, token.as_bytes());
            return;
        }
    };
    out.push(code);
}

/// The identifying fields of a received request, read once (in place).
pub(crate) struct RequestId<'a> {
    via: ViaRef<'a>,
    /// The top Via's branch when it is an RFC 3261 one.
    rfc3261_branch: Option<&'a str>,
    cseq: u32,
}

impl<'a> RequestId<'a> {
    /// Reads the top Via and CSeq, which the parser guarantees but which are checked anyway.
    pub(crate) fn of(req: &'a Request) -> Result<RequestId<'a>, &'static str> {
        let via = req.top_via_ref().ok_or("request without a valid Via")?;
        let (cseq, _) = req.cseq().ok_or("request without a valid CSeq")?;
        let rfc3261_branch = via.branch().filter(|b| is_rfc3261_branch(b));
        Ok(RequestId {
            via,
            rfc3261_branch,
            cseq,
        })
    }

    /// True when the top Via carries an RFC 3261 branch.
    pub(crate) fn is_rfc3261(&self) -> bool {
        self.rfc3261_branch.is_some()
    }

    /// Encodes into `out` the key of the server transaction this request belongs to if its
    /// method were `method` and (for RFC 2543 matching only) its To tag were `to_tag`.
    pub(crate) fn server_key(
        &self,
        req: &Request,
        method: &Method,
        to_tag: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Result<(), &'static str> {
        out.clear();
        if let Some(branch) = self.rfc3261_branch {
            let call_id = req.call_id().ok_or("request without Call-ID")?;
            out.push(SERVER);
            put(out, branch.as_bytes());
            // The sent-by: host (case-insensitive) and port.
            let host = self.via.host.as_bytes();
            out.extend_from_slice(&(host.len() as u64).to_le_bytes());
            out.extend(host.iter().map(u8::to_ascii_lowercase));
            match self.via.port {
                None => out.push(0),
                Some(p) => {
                    out.push(1);
                    out.extend_from_slice(&p.to_le_bytes());
                }
            }
            put_method(out, method);
            put(out, call_id.as_bytes());
        } else {
            let call_id = req.call_id().ok_or("request without Call-ID")?;
            let top_via = self.via.to_via()?.to_string();
            out.push(SERVER_2543);
            put(out, req.uri.as_bytes());
            put(out, call_id.as_bytes());
            out.extend_from_slice(&self.cseq.to_le_bytes());
            put_method(out, method);
            put_opt(out, req.from_tag_ref());
            put_opt(out, to_tag);
            put(out, top_via.as_bytes());
        }
        Ok(())
    }
}

/// Encodes into `out` the key of the client transaction a request creates: it must carry an
/// RFC 3261 branch.
pub(crate) fn client_key_of_request(req: &Request, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let via = req.top_via_ref().ok_or("request without a valid Via")?;
    let Some(branch) = via.branch().filter(|b| is_rfc3261_branch(b)) else {
        return Err("request needs a top Via with a z9hG4bK branch (see new_branch)");
    };
    let (_, method) = req.cseq().ok_or("request without a valid CSeq")?;
    if method != req.method {
        return Err("CSeq method does not match the request method");
    }
    client_key(branch, &method, out);
    Ok(())
}

/// Encodes into `out` the key of the client transaction a response belongs to (§17.1.3): the
/// top Via branch and the CSeq method. False when the response cannot match any transaction
/// of ours.
pub(crate) fn client_key_of_response(resp: &Response, out: &mut Vec<u8>) -> bool {
    let Some(via) = resp.top_via_ref() else {
        return false;
    };
    let (Some((_, method)), Some(branch)) = (resp.cseq(), via.branch()) else {
        return false;
    };
    if !is_rfc3261_branch(branch) {
        return false;
    }
    client_key(branch, &method, out);
    true
}

/// True for a branch with the RFC 3261 magic cookie and an identifier after it.
fn is_rfc3261_branch(branch: &str) -> bool {
    branch.len() > MAGIC_COOKIE.len() && branch.starts_with(MAGIC_COOKIE)
}

fn client_key(branch: &str, method: &Method, out: &mut Vec<u8>) {
    out.clear();
    out.push(CLIENT);
    put(out, branch.as_bytes());
    put_method(out, method);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(via: &str, to: &str) -> Request {
        let text = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@example.com>;tag=f\r\n\
             To: {to}\r\nCall-ID: c@h\r\nCSeq: 7 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let mut lines = text.split("\r\n").skip(1);
        let mut headers = crate::sip::Headers::new();
        for line in lines.by_ref().take_while(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').unwrap();
            headers.push(
                crate::sip::HeaderName::from_token(name.trim()),
                value.trim(),
            );
        }
        Request {
            method: Method::Invite,
            uri: "sip:bob@example.com".into(),
            headers,
            body: Default::default(),
        }
    }

    fn server_key(req: &Request) -> Vec<u8> {
        let mut out = Vec::new();
        RequestId::of(req)
            .unwrap()
            .server_key(req, &Method::Invite, None, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn branch_keys_compare_sent_by_case_insensitively() {
        let a = req(
            "SIP/2.0/UDP Host.example:5060;branch=z9hG4bKx1",
            "<sip:bob@example.com>",
        );
        let b = req(
            "SIP/2.0/UDP host.EXAMPLE:5060;branch=z9hG4bKx1;received=1.2.3.4",
            "<sip:bob@example.com>",
        );
        let ka = server_key(&a);
        let kb = server_key(&b);
        assert_eq!(ka, kb);
        let other_port = req(
            "SIP/2.0/UDP host.example:5070;branch=z9hG4bKx1",
            "<sip:bob@example.com>",
        );
        let kc = server_key(&other_port);
        assert_ne!(ka, kc);
    }

    #[test]
    fn bare_cookie_is_no_branch() {
        let a = req("SIP/2.0/UDP h;branch=z9hG4bK", "<sip:bob@example.com>");
        let id = RequestId::of(&a).unwrap();
        assert!(!id.is_rfc3261());
        assert_eq!(server_key(&a).first(), Some(&SERVER_2543));
        assert!(client_key_of_request(&a, &mut Vec::new()).is_err());
    }

    #[test]
    fn new_branches_are_unique_rfc3261_branches() {
        let a = new_branch();
        assert!(a.starts_with("z9hG4bK") && a.len() > 7);
        assert_ne!(a, new_branch());
    }
}
