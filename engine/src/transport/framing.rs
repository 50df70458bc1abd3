//! Sans-IO framing of SIP over a byte stream (RFC 3261 §18.3): messages are delimited by the
//! empty line and Content-Length; CRLF keep-alives (RFC 5626 §3.5.1) are recognised between
//! messages.

use crate::sip::parse::{content_length_value, ContentLength};
use bytes::{Buf, Bytes, BytesMut};

/// One unit cut from the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A double CRLF "ping": answer with a single CRLF "pong".
    Ping,
    /// One complete message (head and body), ready for [`crate::sip::parse_stream_message`].
    Message(Bytes),
}

/// The stream cannot be framed any more; the connection must be closed after the answer.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameError {
    /// The status to answer with before closing (400 or 513).
    pub status: u16,
    /// What was wrong.
    pub reason: &'static str,
    /// The message head, when there is one to build the answer from.
    pub head: Option<Bytes>,
}

/// Accumulates stream bytes and cuts frames.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max_message: usize,
}

impl StreamFramer {
    /// A framer that refuses messages larger than `max_message` bytes.
    pub fn new(max_message: usize) -> StreamFramer {
        StreamFramer {
            buf: BytesMut::with_capacity(4096),
            max_message,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The buffer to read into directly (avoids a copy); see [`StreamFramer::push`].
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// True when part of a message is waiting for more bytes.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        // CRLFs between messages: a double one is a ping, a single one (a pong) is skipped.
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                return Ok(Some(Frame::Ping));
            }
            if b"\r\n\r\n".starts_with(&self.buf[..]) && !self.buf.is_empty() {
                return Ok(None); // could still become a ping
            }
            if self.buf.starts_with(b"\r\n") {
                self.buf.advance(2);
                continue;
            }
            break;
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some(head_end) = memchr::memmem::find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > self.max_message {
                // Answer from the complete header lines received so far, if any.
                let last_line = memchr::memmem::rfind(&self.buf, b"\r\n").unwrap_or(0);
                return Err(self.error(513, "Message Too Large", last_line));
            }
            return Ok(None);
        };
        let head = &self.buf[..head_end];
        let body_len = match scan_content_length(head) {
            ContentLength::Value(n) => n,
            ContentLength::Absent => {
                return Err(self.error(
                    400,
                    "Missing Content-Length on a stream transport",
                    head_end,
                ))
            }
            ContentLength::Invalid(reason) => return Err(self.error(400, reason, head_end)),
        };
        let total = head_end + 4 + body_len;
        if total > self.max_message {
            return Err(self.error(513, "Message Too Large", head_end));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }

    fn error(&self, status: u16, reason: &'static str, head_end: usize) -> FrameError {
        if head_end == 0 {
            return FrameError {
                status,
                reason,
                head: None,
            };
        }
        let mut head = self.buf[..head_end].to_vec();
        head.extend_from_slice(b"\r\n\r\n");
        FrameError {
            status,
            reason,
            head: Some(Bytes::from(head)),
        }
    }
}

/// Finds Content-Length (or its compact form `l`) in a message head without a full parse.
fn scan_content_length(head: &[u8]) -> ContentLength {
    let mut found = ContentLength::Absent;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            if found != ContentLength::Absent {
                return ContentLength::Invalid("Multiple Content-Length values");
            }
            let value = std::str::from_utf8(line[colon + 1..].trim_ascii()).unwrap_or("x");
            found = content_length_value(value);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 4\r\n\r\nbody";

    #[test]
    fn frames_split_anywhere() {
        let mut all = b"\r\n\r\n".to_vec();
        all.extend_from_slice(MSG);
        all.extend_from_slice(b"\r\n");
        all.extend_from_slice(MSG);
        for cut in 0..all.len() {
            let mut f = StreamFramer::new(65535);
            let mut frames = vec![];
            for part in [&all[..cut], &all[cut..]] {
                f.push(part);
                while let Some(fr) = f.next_frame().unwrap() {
                    frames.push(fr);
                }
            }
            assert_eq!(frames.len(), 3, "cut at {cut}");
            assert_eq!(frames[0], Frame::Ping);
            assert_eq!(frames[2], Frame::Message(Bytes::from_static(MSG)));
        }
    }

    #[test]
    fn framing_errors() {
        let mut f = StreamFramer::new(65535);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n");
        assert_eq!(f.next_frame().unwrap_err().status, 400);
        let mut f = StreamFramer::new(100);
        f.push(&[b'a'; 200]);
        assert_eq!(f.next_frame().unwrap_err().status, 513);
        // An oversized header section is answered from the lines that did arrive.
        let mut f = StreamFramer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nX-Pad: ");
        f.push(&[b'a'; 200]);
        let e = f.next_frame().unwrap_err();
        assert_eq!(e.status, 513);
        assert_eq!(
            e.head.as_deref(),
            Some(&b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"[..])
        );
        let mut f = StreamFramer::new(65535);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 9999\r\n\r\nshort");
        assert_eq!(f.next_frame(), Ok(None));
    }
}
