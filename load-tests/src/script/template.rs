//! Message templates: text with SIPp-style `[variables]`, checked when the scenario loads and
//! rendered for each message sent.
//!
//! A `[...]` is a variable when its content starts with a letter or `$` and holds only
//! letters, digits and `_ - . :` (so `[::1]` and `[2001:db8::1]` stay literal text); a
//! variable name this module does not know is an error at load time.

use std::fmt::Write as _;

/// A variable a template may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    /// `[service]`: the called user (`--service`).
    Service,
    /// `[caller]`: the calling user (`--caller`).
    Caller,
    /// `[remote_ip]`: the target's address (IPv6 in brackets).
    RemoteIp,
    /// `[remote_port]`: the target's port.
    RemotePort,
    /// `[local_ip]`: our SIP address (IPv6 in brackets).
    LocalIp,
    /// `[local_port]`: our SIP port.
    LocalPort,
    /// `[local_ip_type]`: `4` or `6`.
    LocalIpType,
    /// `[transport]`: `UDP`.
    Transport,
    /// `[media_ip]`: our RTP address, bare (SDP form).
    MediaIp,
    /// `[media_port]`: our RTP port.
    MediaPort,
    /// `[media_ip_type]`: `4` or `6`.
    MediaIpType,
    /// `[call_id]`: this call's Call-ID.
    CallId,
    /// `[call_number]`: this call's number in its worker.
    CallNumber,
    /// `[branch]`: a fresh Via branch for this message (for a CANCEL: the INVITE's branch).
    Branch,
    /// `[cseq]`: the call's CSeq number, incremented before each request other than ACK and
    /// CANCEL.
    Cseq,
    /// `[tag]`: this call's From tag.
    Tag,
    /// `[pid]`: the process id.
    Pid,
    /// `[len]`: the body length in bytes (header lines only).
    Len,
    /// `[fieldN]`: field N of the call's `--inf` line.
    Field(usize),
    /// `[$name]`: a user variable (`set` steps, captures).
    User(String),
    /// `[last_Name:]`: every `Name` header line of the last message received, whole.
    LastHeader(String),
    /// `[last_Request_URI]`: the Request-URI of the last request received.
    LastRequestUri,
    /// `[last_cseq_number]`: the CSeq number of the last message received.
    LastCseqNumber,
}

impl Var {
    /// Parses the content of a `[...]`; `Err` names what is wrong.
    pub fn parse(name: &str) -> Result<Var, String> {
        if let Some(user) = name.strip_prefix('$') {
            return if is_ident(user) {
                Ok(Var::User(user.to_string()))
            } else {
                Err(format!(
                    "`[{name}]`: a user variable is `[$name]` with a letter first, then letters, digits or `_`"
                ))
            };
        }
        if let Some(n) = name.strip_prefix("field") {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                return n
                    .parse()
                    .map(Var::Field)
                    .map_err(|_| format!("`[{name}]`: field number too large"));
            }
        }
        if let Some(h) = name.strip_prefix("last_") {
            if let Some(header) = h.strip_suffix(':') {
                return if switchboard_engine::sip::grammar::is_token(header) {
                    Ok(Var::LastHeader(header.to_string()))
                } else {
                    Err(format!("`[{name}]`: `{header}` is not a header name"))
                };
            }
        }
        Ok(match name {
            "service" => Var::Service,
            "caller" => Var::Caller,
            "remote_ip" => Var::RemoteIp,
            "remote_port" => Var::RemotePort,
            "local_ip" => Var::LocalIp,
            "local_port" => Var::LocalPort,
            "local_ip_type" => Var::LocalIpType,
            "transport" => Var::Transport,
            "media_ip" => Var::MediaIp,
            "media_port" => Var::MediaPort,
            "media_ip_type" => Var::MediaIpType,
            "call_id" => Var::CallId,
            "call_number" => Var::CallNumber,
            "branch" => Var::Branch,
            "cseq" => Var::Cseq,
            "tag" => Var::Tag,
            "pid" => Var::Pid,
            "len" => Var::Len,
            "last_Request_URI" => Var::LastRequestUri,
            "last_cseq_number" => Var::LastCseqNumber,
            _ => return Err(format!("unknown variable `[{name}]`")),
        })
    }
}

/// True for `[A-Za-z][A-Za-z0-9_]*`.
pub fn is_ident(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// True when the content of a `[...]` is to be read as a variable name.
fn looks_like_var(content: &str) -> bool {
    let mut b = content.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'$')
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':' | b'$'))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Lit(String),
    Var(Var),
}

/// A template that failed to parse: the offending `[...]` text and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// The text of the variable reference, brackets included (to locate it in the file).
    pub needle: String,
    /// What is wrong.
    pub message: String,
}

/// Text with variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// Supplies variable values while a template renders.
pub trait Env {
    /// Appends the value of `var` (never [`Var::Len`]) to `out`; `Err` says why it has none.
    fn write(&self, var: &Var, out: &mut String) -> Result<(), String>;
}

impl Template {
    /// Splits `text` into literal text and variables.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            let (before, from) = rest.split_at(open);
            lit.push_str(before);
            let content_end = from
                .get(1..)
                .and_then(|c| c.find([']', '[', '\n']).map(|e| (c, e)));
            match content_end {
                Some((c, e)) if c.as_bytes().get(e) == Some(&b']') => {
                    let content = c.get(..e).unwrap_or_default();
                    if looks_like_var(content) {
                        let var = Var::parse(content).map_err(|message| TemplateError {
                            needle: format!("[{content}]"),
                            message,
                        })?;
                        if !lit.is_empty() {
                            segments.push(Segment::Lit(std::mem::take(&mut lit)));
                        }
                        segments.push(Segment::Var(var));
                        rest = c.get(e + 1..).unwrap_or_default();
                        continue;
                    }
                    lit.push('[');
                    rest = c;
                }
                _ => {
                    lit.push('[');
                    rest = from.get(1..).unwrap_or_default();
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            segments.push(Segment::Lit(lit));
        }
        Ok(Template { segments })
    }

    /// The variables used, in order.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var(v) => Some(v),
            Segment::Lit(_) => None,
        })
    }

    /// Appends the rendered text to `out`; `len` is what `[len]` stands for.
    pub fn render(&self, env: &dyn Env, len: usize, out: &mut String) -> Result<(), String> {
        for s in &self.segments {
            match s {
                Segment::Lit(t) => out.push_str(t),
                Segment::Var(Var::Len) => {
                    let _ = write!(out, "{len}");
                }
                Segment::Var(v) => env.write(v, out)?,
            }
        }
        Ok(())
    }

    /// The rendered text.
    pub fn render_string(&self, env: &dyn Env) -> Result<String, String> {
        let mut s = String::new();
        self.render(env, 0, &mut s)?;
        Ok(s)
    }
}

/// What a message template starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// A request with this method.
    Request(switchboard_engine::sip::Method),
    /// A response with this status.
    Response(u16),
}

/// A SIP message template: header lines (a line that renders empty is dropped, as SIPp does)
/// and an optional body. Line ends become CRLF. A `Content-Length` line is dropped when
/// rendering: the encoder always writes the body's real length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageTemplate {
    /// Request or response, and which.
    pub start: StartLine,
    head: Vec<Template>,
    body: Option<Template>,
}

impl MessageTemplate {
    /// Parses a message template.
    pub fn parse(text: &str) -> Result<MessageTemplate, TemplateError> {
        let text = text.trim_start_matches(['\r', '\n', ' ', '\t']);
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let mut head = Vec::new();
        for line in lines.by_ref() {
            if line.trim().is_empty() {
                break;
            }
            head.push(Template::parse(line.trim_end())?);
        }
        let body_lines: Vec<&str> = lines.collect();
        let body_text = body_lines.join("\r\n");
        let body = if body_text.trim().is_empty() {
            None
        } else {
            let t = Template::parse(&body_text)?;
            if t.vars().any(|v| *v == Var::Len) {
                return Err(TemplateError {
                    needle: "[len]".into(),
                    message: "`[len]` belongs in a header line, not in the body".into(),
                });
            }
            Some(t)
        };
        let first = text
            .split('\n')
            .next()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| TemplateError {
                needle: String::new(),
                message: "empty message".into(),
            })?;
        let start = start_line(first).map_err(|message| TemplateError {
            needle: first.to_string(),
            message,
        })?;
        Ok(MessageTemplate { start, head, body })
    }

    /// Every template inside, header lines first.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.head.iter().chain(self.body.as_ref())
    }

    /// The message text: header lines, a blank line, the body.
    pub fn render(&self, env: &dyn Env) -> Result<String, String> {
        let mut body = String::new();
        if let Some(b) = &self.body {
            b.render(env, 0, &mut body)?;
        }
        let mut out = String::with_capacity(512 + body.len());
        for line in &self.head {
            let mark = out.len();
            line.render(env, body.len(), &mut out)?;
            let line = out.get(mark..).unwrap_or_default();
            let content_length = line.split_once(':').is_some_and(|(name, _)| {
                let name = name.trim();
                name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l")
            });
            if content_length || line.trim().is_empty() {
                out.truncate(mark);
            } else {
                out.push_str("\r\n");
            }
        }
        out.push_str("\r\n");
        out.push_str(&body);
        Ok(out)
    }
}

/// Reads the start line: `METHOD uri SIP/2.0` or `SIP/2.0 code reason`.
fn start_line(first: &str) -> Result<StartLine, String> {
    let mut words = first.split_ascii_whitespace();
    let w0 = words.next().unwrap_or_default();
    if w0 == "SIP/2.0" {
        let code = words.next().unwrap_or_default();
        return match code.parse::<u16>() {
            Ok(c) if (100..=699).contains(&c) && code.len() == 3 => Ok(StartLine::Response(c)),
            _ => Err(format!(
                "a response starts `SIP/2.0 <code 100-699> <reason>`, not `{first}`"
            )),
        };
    }
    let looks_method = !w0.is_empty() && w0.bytes().all(|b| b.is_ascii_uppercase());
    if looks_method && first.trim_end().ends_with("SIP/2.0") && words.next().is_some() {
        return Ok(StartLine::Request(
            switchboard_engine::sip::Method::from_token(w0),
        ));
    }
    Err(format!(
        "a message starts with `METHOD uri SIP/2.0` or `SIP/2.0 code reason`, not `{first}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_engine::sip::Method;

    struct Fixed;
    impl Env for Fixed {
        fn write(&self, var: &Var, out: &mut String) -> Result<(), String> {
            match var {
                Var::Service => out.push_str("svc"),
                Var::User(n) if n == "x" => out.push('X'),
                Var::LastHeader(_) => {}
                v => return Err(format!("unset {v:?}")),
            }
            Ok(())
        }
    }

    #[test]
    fn variables_and_literal_brackets() {
        let t = Template::parse("a [service] [$x] [::1] [2001:db8::1]:5060 [ x ] [").expect("ok");
        assert_eq!(t.vars().count(), 2);
        assert_eq!(
            t.render_string(&Fixed).expect("renders"),
            "a svc X [::1] [2001:db8::1]:5060 [ x ] ["
        );
        let e = Template::parse("x [remote-ip] y").expect_err("unknown");
        assert_eq!(e.needle, "[remote-ip]");
        assert!(e.message.contains("unknown variable"), "{}", e.message);
        assert!(Template::parse("[$1a]").is_err());
        assert_eq!(
            Template::parse("[field12][last_Via:][last_Call-ID:]")
                .expect("ok")
                .vars()
                .cloned()
                .collect::<Vec<_>>(),
            vec![
                Var::Field(12),
                Var::LastHeader("Via".into()),
                Var::LastHeader("Call-ID".into())
            ]
        );
    }

    #[test]
    fn message_len_and_dropped_lines() {
        let m = MessageTemplate::parse(
            "\nOPTIONS sip:[service]@h SIP/2.0\n[last_Via:]\nX-Len: [len]\nContent-Length: [len]\n\nhello\n",
        )
        .expect("ok");
        assert_eq!(m.start, StartLine::Request(Method::Options));
        let text = m.render(&Fixed).expect("renders");
        assert_eq!(
            text,
            "OPTIONS sip:svc@h SIP/2.0\r\nX-Len: 7\r\n\r\nhello\r\n"
        );
        let r = MessageTemplate::parse("SIP/2.0 200 OK\nX: 1").expect("ok");
        assert_eq!(r.start, StartLine::Response(200));
        assert!(MessageTemplate::parse("hello world").is_err());
        assert!(MessageTemplate::parse("SIP/2.0 99 Nope").is_err());
        assert!(MessageTemplate::parse("   \n  ").is_err());
        assert!(MessageTemplate::parse("BYE x SIP/2.0\n\nbody [len]").is_err());
    }
}
