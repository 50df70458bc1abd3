//! SIP codec micro-benchmark: parse and serialize a typical INVITE with SDP and a typical
//! 200 OK with SDP, with Switchboard's parser (`switchboard_engine::sip`) and, as the anchor,
//! rsipstack's codec (`rsipstack::sip::SipMessage`).
//!
//! Run with `cargo bench -p switchboard-load --bench sip_codec` (or `make bench-codec`). The
//! sample size and measurement time are kept small so the whole run stays under a minute.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

/// A softphone's INVITE with an SDP offer (PCMU, PCMA, telephone-event), ≈ 930 bytes.
const INVITE: &str = "INVITE sip:+15551234567@switchboard.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5062;rport;branch=z9hG4bK-524287-1---8d3f1c2b9e4a7f60\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.0.2.10:5062;transport=udp>\r\n\
To: <sip:+15551234567@switchboard.example.com;user=phone>\r\n\
From: \"Alice Example\" <sip:alice@switchboard.example.com>;tag=6a2f9c81\r\n\
Call-ID: 9c4d2e7f1b3a5c8d0e2f4a6b8c0d2e4f@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Supported: replaces, norefersub, timer\r\n\
Content-Type: application/sdp\r\n\
User-Agent: Zoiper rv2.10.20.4\r\n\
Content-Length: 304\r\n\
\r\n\
v=0\r\n\
o=Zoiper 0 529147120 IN IP4 192.0.2.10\r\n\
s=Zoiper\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 40342 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=ssrc:2418031427 cname:f3a9c1d2e8b74c6a\r\n\
a=maxptime:150\r\n";

/// The 200 OK answering [`INVITE`], with an SDP answer (PCMU, telephone-event).
const OK_200: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5062;rport=5062;received=192.0.2.10;branch=z9hG4bK-524287-1---8d3f1c2b9e4a7f60\r\n\
Record-Route: <sip:203.0.113.5;lr>\r\n\
Contact: <sip:+15551234567@203.0.113.5:5060;transport=udp>\r\n\
To: <sip:+15551234567@switchboard.example.com;user=phone>;tag=as5f8e2c1d\r\n\
From: \"Alice Example\" <sip:alice@switchboard.example.com>;tag=6a2f9c81\r\n\
Call-ID: 9c4d2e7f1b3a5c8d0e2f4a6b8c0d2e4f@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY\r\n\
Supported: replaces, timer\r\n\
Server: Switchboard/0.1\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 220\r\n\
\r\n\
v=0\r\n\
o=switchboard 8113 8113 IN IP4 203.0.113.5\r\n\
s=switchboard\r\n\
c=IN IP4 203.0.113.5\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// The messages measured: (name, wire bytes).
const MESSAGES: [(&str, &str); 2] = [("invite_sdp", INVITE), ("ok200_sdp", OK_200)];

/// Checks once, before timing, that both codecs accept every message and that Switchboard's
/// output parses again: a benchmark of a parser that fails fast would measure nothing.
fn check_messages() {
    for (name, text) in MESSAGES {
        let msg = switchboard_engine::sip::parse_datagram(text.as_bytes())
            .unwrap_or_else(|e| panic!("switchboard rejects {name}: {} {}", e.status, e.reason));
        switchboard_engine::sip::parse_datagram(&msg.to_bytes())
            .unwrap_or_else(|e| panic!("switchboard rejects its own {name}: {}", e.reason));
        rsipstack::sip::SipMessage::try_from(text.as_bytes())
            .unwrap_or_else(|e| panic!("rsipstack rejects {name}: {e}"));
    }
}

fn codec(c: &mut Criterion) {
    check_messages();
    for (name, text) in MESSAGES {
        let wire = text.as_bytes();
        let mut group = c.benchmark_group(format!("sip_codec/{name}"));
        group.throughput(Throughput::Bytes(wire.len() as u64));

        group.bench_function(BenchmarkId::new("parse", "switchboard"), |b| {
            b.iter(|| switchboard_engine::sip::parse_datagram(black_box(wire)).unwrap())
        });
        group.bench_function(BenchmarkId::new("parse", "rsipstack"), |b| {
            b.iter(|| rsipstack::sip::SipMessage::try_from(black_box(wire)).unwrap())
        });

        let ours = switchboard_engine::sip::parse_datagram(wire).unwrap();
        let mut out = Vec::with_capacity(2048);
        group.bench_function(BenchmarkId::new("serialize", "switchboard"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&ours).encode(&mut out);
                black_box(out.len())
            })
        });
        let theirs = rsipstack::sip::SipMessage::try_from(wire).unwrap();
        group.bench_function(BenchmarkId::new("serialize", "rsipstack"), |b| {
            b.iter(|| black_box(&theirs).to_bytes())
        });

        group.bench_function(BenchmarkId::new("parse+serialize", "switchboard"), |b| {
            b.iter(|| {
                switchboard_engine::sip::parse_datagram(black_box(wire))
                    .unwrap()
                    .to_bytes()
            })
        });
        group.bench_function(BenchmarkId::new("parse+serialize", "rsipstack"), |b| {
            b.iter(|| {
                rsipstack::sip::SipMessage::try_from(black_box(wire))
                    .unwrap()
                    .to_bytes()
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = codec
}
criterion_main!(benches);
