//! Header names (with RFC 3261 §7.3.3 compact forms) and the ordered header list of a message.

use std::fmt;
use std::sync::Arc;

macro_rules! header_names {
    ($( $variant:ident => $long:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Known names are matched case-insensitively, in long or compact
        /// form, and always written in their long canonical form.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $(
                #[doc = $long]
                $variant,
            )*
            /// Any other header, with the spelling it arrived with.
            Other(Box<str>),
        }

        impl HeaderName {
            /// Parses a header name (already checked to be a `token`).
            pub fn from_token(name: &str) -> HeaderName {
                if let Some(known) = common_name(name) {
                    return known;
                }
                $(
                    if name.eq_ignore_ascii_case($long) $(|| name.eq_ignore_ascii_case($compact))? {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other(name.into())
            }

            /// The canonical (long) spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $long, )*
                    HeaderName::Other(s) => s,
                }
            }
        }
    };
}

header_names! {
    Via => "Via", "v";
    From => "From", "f";
    To => "To", "t";
    CallId => "Call-ID", "i";
    CSeq => "CSeq";
    MaxForwards => "Max-Forwards";
    ContentLength => "Content-Length", "l";
    ContentType => "Content-Type", "c";
    ContentEncoding => "Content-Encoding", "e";
    Contact => "Contact", "m";
    Route => "Route";
    RecordRoute => "Record-Route";
    Require => "Require";
    ProxyRequire => "Proxy-Require";
    Supported => "Supported", "k";
    Unsupported => "Unsupported";
    Allow => "Allow";
    Accept => "Accept";
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    Expires => "Expires";
    MinExpires => "Min-Expires";
    Authorization => "Authorization";
    ProxyAuthorization => "Proxy-Authorization";
    WwwAuthenticate => "WWW-Authenticate";
    ProxyAuthenticate => "Proxy-Authenticate";
    RetryAfter => "Retry-After";
    Server => "Server";
    UserAgent => "User-Agent";
    Subject => "Subject", "s";
    Event => "Event", "o";
    ReferTo => "Refer-To", "r";
    ReferredBy => "Referred-By", "b";
    AllowEvents => "Allow-Events", "u";
    SessionExpires => "Session-Expires", "x";
    MinSe => "Min-SE";
    RSeq => "RSeq";
    RAck => "RAck";
    Replaces => "Replaces";
    Warning => "Warning";
    Date => "Date";
    Timestamp => "Timestamp";
}

/// The names nearly every message carries, found by length and first letter before the
/// general search (which tries every known name in turn).
#[inline]
fn common_name(name: &str) -> Option<HeaderName> {
    let b = name.as_bytes();
    let first = b.first()?.to_ascii_lowercase();
    let (lower, known): (&[u8], HeaderName) = match (b.len(), first) {
        (3, b'v') => (b"via", HeaderName::Via),
        (4, b'f') => (b"from", HeaderName::From),
        (2, b't') => (b"to", HeaderName::To),
        (7, b'c') if b[1] | 0x20 == b'a' => (b"call-id", HeaderName::CallId),
        (7, b'c') => (b"contact", HeaderName::Contact),
        (4, b'c') => (b"cseq", HeaderName::CSeq),
        (12, b'm') => (b"max-forwards", HeaderName::MaxForwards),
        (14, b'c') => (b"content-length", HeaderName::ContentLength),
        (12, b'c') => (b"content-type", HeaderName::ContentType),
        (6, b's') => (b"server", HeaderName::Server),
        (10, b'u') => (b"user-agent", HeaderName::UserAgent),
        (5, b'r') => (b"route", HeaderName::Route),
        (12, b'r') => (b"record-route", HeaderName::RecordRoute),
        (5, b'a') => (b"allow", HeaderName::Allow),
        (9, b's') => (b"supported", HeaderName::Supported),
        _ => return None,
    };
    eq_lower(b, lower).then_some(known)
}

/// `name.eq_ignore_ascii_case(lower)` for an all-lowercase `lower`, without an early exit
/// per byte (the loop compiles to a few wide operations).
#[inline]
fn eq_lower(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && name
            .iter()
            .zip(lower)
            .fold(0u8, |acc, (&a, &k)| acc | (a.to_ascii_lowercase() ^ k))
            == 0
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field line: the name and its unfolded, trimmed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The header name.
    pub name: HeaderName,
    /// The value with line folding replaced by a single space and outer whitespace trimmed.
    pub value: String,
}

/// The headers of a message, in arrival order (order matters for Via, Route and Record-Route).
///
/// The list is shared copy-on-write: cloning a message (a transaction keeping the request it
/// retransmits, a response kept for retransmission) shares the header lines instead of copying
/// every value; the first change to a shared list copies it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Arc<Vec<Header>>);

impl Headers {
    /// An empty header list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// An empty header list with room for `n` lines.
    pub fn with_capacity(n: usize) -> Headers {
        Headers(Arc::new(Vec::with_capacity(n)))
    }

    /// A header list made of these lines.
    pub(crate) fn from_lines(lines: Vec<Header>) -> Headers {
        Headers(Arc::new(lines))
    }

    fn lines_mut(&mut self) -> &mut Vec<Header> {
        Arc::make_mut(&mut self.0)
    }

    /// Appends a header.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.lines_mut().push(Header {
            name,
            value: value.into(),
        });
    }

    /// Inserts a header at the front (used for a new top Via).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        self.lines_mut().insert(
            0,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// The value of the first header with this name.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0
            .iter()
            .find(|h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// A mutable reference to the value of the first header with this name.
    pub fn get_mut(&mut self, name: &HeaderName) -> Option<&mut String> {
        let i = self.0.iter().position(|h| &h.name == name)?;
        self.lines_mut().get_mut(i).map(|h| &mut h.value)
    }

    /// The values of every header line with this name, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// How many header lines carry this name.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.0.iter().filter(|h| &h.name == name).count()
    }

    /// Removes every header with this name.
    pub fn remove(&mut self, name: &HeaderName) {
        if self.0.iter().any(|h| &h.name == name) {
            self.lines_mut().retain(|h| &h.name != name);
        }
    }

    /// Replaces every header with this name by one line with `value`.
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        self.remove(&name);
        self.push(name, value);
    }

    /// All header lines in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// The number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_in_any_case() {
        let names = [
            "Via",
            "From",
            "To",
            "Call-ID",
            "Contact",
            "CSeq",
            "Max-Forwards",
            "Content-Length",
            "Content-Type",
            "Server",
            "User-Agent",
            "Route",
            "Record-Route",
            "Allow",
            "Supported",
            "Subject",
            "Expires",
            "Accept",
        ];
        for n in names {
            let known = HeaderName::from_token(n);
            assert!(!matches!(known, HeaderName::Other(_)), "{n}");
            assert_eq!(known.as_str(), n);
            assert_eq!(HeaderName::from_token(&n.to_ascii_lowercase()), known);
            assert_eq!(HeaderName::from_token(&n.to_ascii_uppercase()), known);
            // One letter off: another name.
            let mut odd = n.as_bytes().to_vec();
            let last = odd.len() - 1;
            odd[last] = if odd[last] == b'x' { b'y' } else { b'x' };
            let odd = String::from_utf8(odd).expect("ASCII");
            assert_ne!(HeaderName::from_token(&odd), known, "{odd}");
        }
        assert_eq!(
            HeaderName::from_token("Cbll-ID"),
            HeaderName::Other("Cbll-ID".into())
        );
        assert_eq!(HeaderName::from_token("m"), HeaderName::Contact);
    }
}
