//! Prometheus metrics of the SIP core, exported on `/metrics`.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric the SIP core maintains.
#[derive(Clone)]
pub struct Metrics {
    /// The registry to encode on `/metrics`.
    pub registry: Registry,
    /// Messages received, by transport and kind (request/response).
    pub received: IntCounterVec,
    /// Requests by method that reached the transaction layer.
    pub requests: IntCounterVec,
    /// Responses sent, by status code.
    pub responses_sent: IntCounterVec,
    /// Messages refused by the parser, by the status answered (0 = dropped).
    pub parse_errors: IntCounterVec,
    /// Messages dropped, by reason.
    pub dropped: IntCounterVec,
    /// 503 answers given by overload protection.
    pub overload_rejections: IntCounter,
    /// Live transactions, all shards.
    pub transactions: IntGauge,
    /// Inbound queue depth, by shard.
    pub queue_depth: IntGaugeVec,
    /// Open TCP connections.
    pub tcp_connections: IntGauge,
    /// Calls in progress (call actors alive).
    pub calls_active: IntGauge,
    /// Calls ended, by cause.
    pub calls_ended: IntCounterVec,
    /// RTP/RTCP port pairs in use.
    pub rtp_port_pairs_in_use: IntGauge,
    /// SRTP/SRTCP packets dropped on secured legs (failed authentication, replayed, unkeyed),
    /// added when each call ends.
    pub srtp_rejected: IntCounter,
    /// DTLS-SRTP handshakes completed on SIP legs (`dtls_handshakes_total{result="ok"}`).
    pub dtls_handshakes_ok: IntCounter,
    /// DTLS-SRTP handshakes failed: fingerprint mismatch, timeout, no common profile
    /// (`dtls_handshakes_total{result="failed"}`).
    pub dtls_handshakes_failed: IntCounter,
    /// Calls started (call actors created): the CPS counter.
    pub calls_total: IntCounter,
    /// Calls started in the last whole second (set once a second).
    pub calls_per_second: IntGauge,
    /// RTP packets relayed, by direction (`a_to_b`, `b_to_a`), added when each call ends.
    pub rtp_packets: IntCounterVec,
    /// RTP packets lost (sequence gaps), by direction, added when each call ends.
    pub rtp_lost: IntCounterVec,
    /// RFC 3550 interarrival jitter of each received stream at the end of its call (ms).
    pub rtp_jitter_ms: Histogram,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Invariant for the expects below: names and labels are static and valid, and each
        // metric is registered once in a fresh registry.
        let cv = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let received = cv(
            "sip_messages_received_total",
            "SIP messages received",
            &["transport", "kind"],
        );
        let requests = cv(
            "sip_requests_total",
            "SIP requests passed to the transaction layer",
            &["method"],
        );
        let responses_sent = cv("sip_responses_sent_total", "SIP responses sent", &["code"]);
        let parse_errors = cv(
            "sip_parse_errors_total",
            "SIP messages refused by the parser",
            &["status"],
        );
        let dropped = cv(
            "sip_messages_dropped_total",
            "SIP messages dropped",
            &["reason"],
        );
        let overload_rejections = IntCounter::new(
            "sip_overload_rejections_total",
            "Requests answered 503 by overload protection",
        )
        .expect("static metric definition");
        registry
            .register(Box::new(overload_rejections.clone()))
            .expect("registered once");
        let transactions = IntGauge::new("sip_transactions", "Live SIP transactions")
            .expect("static metric definition");
        registry
            .register(Box::new(transactions.clone()))
            .expect("registered once");
        let queue_depth = IntGaugeVec::new(
            Opts::new("sip_shard_queue_depth", "Inbound queue depth per shard"),
            &["shard"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(queue_depth.clone()))
            .expect("registered once");
        let tcp_connections = IntGauge::new("sip_tcp_connections", "Open SIP TCP connections")
            .expect("static metric definition");
        registry
            .register(Box::new(tcp_connections.clone()))
            .expect("registered once");
        let calls_active =
            IntGauge::new("calls_active", "Calls in progress").expect("static metric definition");
        registry
            .register(Box::new(calls_active.clone()))
            .expect("registered once");
        let calls_ended = cv("calls_ended_total", "Calls ended, by cause", &["cause"]);
        let rtp_port_pairs_in_use =
            IntGauge::new("rtp_port_pairs_in_use", "RTP/RTCP port pairs in use")
                .expect("static metric definition");
        registry
            .register(Box::new(rtp_port_pairs_in_use.clone()))
            .expect("registered once");
        let srtp_rejected = IntCounter::new(
            "srtp_packets_rejected_total",
            "SRTP/SRTCP packets dropped on secured legs (authentication, replay, no key yet)",
        )
        .expect("static metric definition");
        registry
            .register(Box::new(srtp_rejected.clone()))
            .expect("registered once");
        let dtls_handshakes = IntCounterVec::new(
            Opts::new(
                "dtls_handshakes_total",
                "DTLS-SRTP handshakes on SIP legs, by result (ok, failed)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(dtls_handshakes.clone()))
            .expect("registered once");
        let dtls_handshakes_ok = dtls_handshakes.with_label_values(&["ok"]);
        let dtls_handshakes_failed = dtls_handshakes.with_label_values(&["failed"]);
        let calls_total = IntCounter::new("calls_total", "Calls started (CPS: rate of this)")
            .expect("static metric definition");
        registry
            .register(Box::new(calls_total.clone()))
            .expect("registered once");
        let calls_per_second =
            IntGauge::new("calls_per_second", "Calls started in the last whole second")
                .expect("static metric definition");
        registry
            .register(Box::new(calls_per_second.clone()))
            .expect("registered once");
        let rtp_packets = cv(
            "rtp_packets_total",
            "RTP packets relayed, by direction (added at call end)",
            &["direction"],
        );
        let rtp_lost = cv(
            "rtp_packets_lost_total",
            "RTP packets lost (sequence gaps), by direction (added at call end)",
            &["direction"],
        );
        let rtp_jitter_ms = Histogram::with_opts(
            HistogramOpts::new(
                "rtp_jitter_ms",
                "Interarrival jitter of received RTP streams at call end (ms)",
            )
            .buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0]),
        )
        .expect("static metric definition");
        registry
            .register(Box::new(rtp_jitter_ms.clone()))
            .expect("registered once");
        Metrics {
            calls_total,
            calls_per_second,
            rtp_packets,
            rtp_lost,
            rtp_jitter_ms,
            srtp_rejected,
            dtls_handshakes_ok,
            dtls_handshakes_failed,
            calls_active,
            calls_ended,
            rtp_port_pairs_in_use,
            registry,
            received,
            requests,
            responses_sent,
            parse_errors,
            dropped,
            overload_rejections,
            transactions,
            queue_depth,
            tcp_connections,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail for well-formed metric families.
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
