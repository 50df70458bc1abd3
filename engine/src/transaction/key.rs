//! Transaction identity: the opaque [`TxKey`] handle the TU holds, the matching keys of
//! RFC 3261 §17.1.3 (responses) and §17.2.3 (requests, with the RFC 2543 fallback), and
//! [`new_branch`].

use crate::sip::{Method, Request, Response, SipHeaders, Via};
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
    format!(
        "z9hG4bK{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}

/// What the layer's index is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum MatchKey {
    /// A server transaction created by a request with a magic-cookie branch (§17.2.3). The
    /// Call-ID is compared too: two requests from a broken client that reuse a branch across
    /// calls (RFC 4475's `unkscm` and `novelsc` do) are not retransmissions of each other.
    Server {
        branch: Box<str>,
        sent_by: Box<str>,
        method: Method,
        call_id: Box<str>,
    },
    /// A server transaction created by a request without one (RFC 2543 matching).
    Server2543(Box<Rfc2543Key>),
    /// A client transaction: the branch we put in the top Via and the method (§17.1.3).
    Client { branch: Box<str>, method: Method },
}

/// The fields RFC 3261 §17.2.3 compares for requests without a magic-cookie branch. The To
/// tag is the one of the request that created the transaction; an ACK for a non-2xx answer
/// is looked up with the INVITE's To tag and then checked against the response's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Rfc2543Key {
    uri: Box<str>,
    call_id: Box<str>,
    cseq: u32,
    method: Method,
    from_tag: Option<Box<str>>,
    to_tag: Option<Box<str>>,
    top_via: Box<str>,
}

/// The identifying fields of a received request, read once.
pub(crate) struct RequestId {
    via: Via,
    cseq: u32,
}

impl RequestId {
    /// Reads the top Via and CSeq, which the parser guarantees but which are checked anyway.
    pub(crate) fn of(req: &Request) -> Result<RequestId, &'static str> {
        let via = req.top_via().ok_or("request without a valid Via")?;
        let (cseq, _) = req.cseq().ok_or("request without a valid CSeq")?;
        Ok(RequestId { via, cseq })
    }

    /// True when the top Via carries an RFC 3261 branch.
    pub(crate) fn is_rfc3261(&self) -> bool {
        self.via.has_rfc3261_branch()
    }

    /// The key of the server transaction this request belongs to if its method were `method`
    /// and (for RFC 2543 matching only) its To tag were `to_tag`.
    pub(crate) fn server_key(
        &self,
        req: &Request,
        method: Method,
        to_tag: Option<&str>,
    ) -> Result<MatchKey, &'static str> {
        if self.is_rfc3261() {
            let branch = self.via.branch().ok_or("Via without branch")?;
            let call_id = req.call_id().ok_or("request without Call-ID")?;
            Ok(MatchKey::Server {
                branch: branch.into(),
                sent_by: sent_by(&self.via),
                method,
                call_id: call_id.into(),
            })
        } else {
            let call_id = req.call_id().ok_or("request without Call-ID")?;
            Ok(MatchKey::Server2543(Box::new(Rfc2543Key {
                uri: req.uri.as_str().into(),
                call_id: call_id.into(),
                cseq: self.cseq,
                method,
                from_tag: req.from_tag().map(Into::into),
                to_tag: to_tag.map(Into::into),
                top_via: self.via.to_string().into(),
            })))
        }
    }
}

/// The sent-by of a Via (`host[:port]`), the host compared case-insensitively.
fn sent_by(via: &Via) -> Box<str> {
    let host = via.host.to_ascii_lowercase();
    match via.port {
        Some(p) => format!("{host}:{p}").into(),
        None => host.into(),
    }
}

/// The key of the client transaction a request creates: it must carry an RFC 3261 branch.
pub(crate) fn client_key_of_request(req: &Request) -> Result<MatchKey, &'static str> {
    let via = req.top_via().ok_or("request without a valid Via")?;
    if !via.has_rfc3261_branch() {
        return Err("request needs a top Via with a z9hG4bK branch (see new_branch)");
    }
    let branch = via.branch().ok_or("Via without branch")?;
    let (_, method) = req.cseq().ok_or("request without a valid CSeq")?;
    if method != req.method {
        return Err("CSeq method does not match the request method");
    }
    Ok(MatchKey::Client {
        branch: branch.into(),
        method,
    })
}

/// The key of the client transaction a response belongs to (§17.1.3): the top Via branch and
/// the CSeq method. `None` when the response cannot match any transaction of ours.
pub(crate) fn client_key_of_response(resp: &Response) -> Option<MatchKey> {
    let via = resp.top_via()?;
    if !via.has_rfc3261_branch() {
        return None;
    }
    let (_, method) = resp.cseq()?;
    Some(MatchKey::Client {
        branch: via.branch()?.into(),
        method,
    })
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
        let ka = RequestId::of(&a)
            .unwrap()
            .server_key(&a, Method::Invite, None)
            .unwrap();
        let kb = RequestId::of(&b)
            .unwrap()
            .server_key(&b, Method::Invite, None)
            .unwrap();
        assert_eq!(ka, kb);
        let other_port = req(
            "SIP/2.0/UDP host.example:5070;branch=z9hG4bKx1",
            "<sip:bob@example.com>",
        );
        let kc = RequestId::of(&other_port)
            .unwrap()
            .server_key(&other_port, Method::Invite, None)
            .unwrap();
        assert_ne!(ka, kc);
    }

    #[test]
    fn bare_cookie_is_no_branch() {
        let a = req("SIP/2.0/UDP h;branch=z9hG4bK", "<sip:bob@example.com>");
        let id = RequestId::of(&a).unwrap();
        assert!(!id.is_rfc3261());
        assert!(matches!(
            id.server_key(&a, Method::Invite, None),
            Ok(MatchKey::Server2543(_))
        ));
        assert!(client_key_of_request(&a).is_err());
    }

    #[test]
    fn new_branches_are_unique_rfc3261_branches() {
        let a = new_branch();
        assert!(a.starts_with("z9hG4bK") && a.len() > 7);
        assert_ne!(a, new_branch());
    }
}
