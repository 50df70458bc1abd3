//! The transaction layer driven with simulated time: no sockets, no sleeps.

mod transaction {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};
    use switchboard_engine::sip::build::response;
    use switchboard_engine::sip::{
        HeaderName, Headers, Message, Method, Request, Response, SipHeaders,
    };
    use switchboard_engine::transaction::{
        new_branch, LayerConfig, Peer, TimerConfig, TransactionLayer, Transmit, TransportKind,
        TuEvent, TxError, TxKey, TxKind,
    };

    const T1: Duration = Duration::from_millis(500);
    const T2: Duration = Duration::from_secs(4);
    const T4: Duration = Duration::from_secs(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn peer(transport: TransportKind) -> Peer {
        let addr: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        Peer {
            transport,
            addr,
            conn: None,
        }
    }

    fn udp() -> Peer {
        peer(TransportKind::Udp)
    }

    fn tcp() -> Peer {
        Peer {
            conn: Some(7),
            ..peer(TransportKind::Tcp)
        }
    }

    /// A request with the given method, top Via parameters, CSeq number and To.
    fn req_with(method: &str, via_params: &str, cseq: u32, to: &str) -> Request {
        let text = format!(
            "{method} sip:bob@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060{via_params}\r\n\
             Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKfirsthop\r\n\
             Route: <sip:proxy.example.com;lr>\r\n\
             Max-Forwards: 70\r\n\
             From: Alice <sip:alice@example.com>;tag=from1\r\n\
             To: {to}\r\n\
             Call-ID: call-1@192.0.2.1\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:alice@192.0.2.1>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        simple_request(&text)
    }

    /// Builds a request from well-formed text without the wire parser, so these tests only
    /// exercise the transaction layer.
    fn simple_request(text: &str) -> Request {
        let mut lines = text.split("\r\n");
        let mut start = lines.next().unwrap().split(' ');
        let method = Method::from_token(start.next().unwrap());
        let uri = start.next().unwrap().to_string();
        let mut headers = Headers::new();
        for line in lines.take_while(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').unwrap();
            headers.push(HeaderName::from_token(name.trim()), value.trim());
        }
        Request {
            method,
            uri,
            headers,
            body: Default::default(),
        }
    }

    fn req(method: &str, branch: &str) -> Request {
        req_with(
            method,
            &format!(";branch={branch}"),
            1,
            "Bob <sip:bob@example.com>",
        )
    }

    fn invite(branch: &str) -> Request {
        req("INVITE", branch)
    }

    /// A response as the far end would send it (with a To tag when above 100).
    fn answer(r: &Request, status: u16) -> Response {
        response(r, status)
    }

    fn layer() -> TransactionLayer {
        TransactionLayer::new(TimerConfig::default(), 1000)
    }

    fn transmits(l: &mut TransactionLayer) -> Vec<Transmit> {
        std::iter::from_fn(|| l.poll_transmit()).collect()
    }

    fn events(l: &mut TransactionLayer) -> Vec<TuEvent> {
        std::iter::from_fn(|| l.poll_event()).collect()
    }

    fn statuses(ts: &[Transmit]) -> Vec<u16> {
        ts.iter()
            .map(|t| match &t.message {
                Message::Response(r) => r.status,
                Message::Request(_) => 0,
            })
            .collect()
    }

    /// Runs timers until `end` (inclusive), returning (offset from `t0`, transmits, events) for
    /// each wake-up that produced something.
    #[allow(clippy::type_complexity)]
    fn run_until(
        l: &mut TransactionLayer,
        t0: Instant,
        end: Instant,
    ) -> Vec<(Duration, Vec<Transmit>, Vec<TuEvent>)> {
        let mut out = Vec::new();
        while let Some(at) = l.poll_timeout() {
            if at > end {
                break;
            }
            l.handle_timeout(at);
            let (ts, evs) = (transmits(l), events(l));
            if !ts.is_empty() || !evs.is_empty() {
                out.push((at - t0, ts, evs));
            }
        }
        out
    }

    fn new_server_tx(evs: &[TuEvent]) -> TxKey {
        evs.iter()
            .find_map(|e| match e {
                TuEvent::Request { tx, .. } => Some(*tx),
                _ => None,
            })
            .expect("a new server transaction")
    }

    // ---- INVITE client ----

    #[test]
    fn invite_client_udp_retransmits_doubling_until_timer_b() {
        let mut l = layer();
        let t0 = Instant::now();
        let tx = l.send_request(t0, invite(&new_branch()), udp()).unwrap();
        assert_eq!(tx.kind(), TxKind::ClientInvite);
        assert_eq!(transmits(&mut l).len(), 1);
        let log = run_until(&mut l, t0, t0 + Duration::from_secs(100));
        let sends: Vec<Duration> = log
            .iter()
            .filter(|(_, ts, _)| !ts.is_empty())
            .map(|(at, _, _)| *at)
            .collect();
        // Intervals T1, 2T1, 4T1, 8T1, 16T1, 32T1: sent at T1, 3T1, 7T1, 15T1, 31T1, 63T1.
        assert_eq!(sends, [1, 3, 7, 15, 31, 63].map(|k| T1 * k));
        let (at, _, evs) = log.last().unwrap();
        assert_eq!(*at, T1 * 64);
        assert_eq!(evs, &[TuEvent::Timeout { tx }, TuEvent::Terminated { tx }]);
        assert!(l.is_empty());
        assert_eq!(l.poll_timeout(), None);
        assert_eq!(l.stats().timeouts, 1);
    }

    #[test]
    fn invite_client_non_2xx_is_acked_by_the_transaction() {
        let mut l = layer();
        let t0 = Instant::now();
        let inv = invite(&new_branch());
        let tx = l.send_request(t0, inv.clone(), udp()).unwrap();
        transmits(&mut l);
        l.handle_response(t0 + ms(100), answer(&inv, 180), udp());
        assert!(
            matches!(&events(&mut l)[..], [TuEvent::Response { resp, .. }] if resp.status == 180)
        );
        // Proceeding: no more retransmissions of the INVITE.
        assert!(run_until(&mut l, t0, t0 + ms(5000)).is_empty());
        let busy = answer(&inv, 486);
        l.handle_response(t0 + ms(5000), busy.clone(), udp());
        let ts = transmits(&mut l);
        assert_eq!(ts.len(), 1);
        let Message::Request(ack) = &ts[0].message else {
            panic!("expected the ACK")
        };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, inv.uri);
        assert_eq!(ack.cseq(), Some((1, Method::Ack)));
        assert_eq!(
            ack.top_via().unwrap().branch(),
            inv.top_via().unwrap().branch()
        );
        assert_eq!(ack.headers.count(&HeaderName::Via), 1);
        assert_eq!(ack.to_tag(), busy.to_tag());
        assert!(ack.to_tag().is_some());
        assert_eq!(ack.from_tag(), inv.from_tag());
        assert_eq!(
            ack.headers.get(&HeaderName::Route),
            inv.headers.get(&HeaderName::Route)
        );
        assert!(
            matches!(&events(&mut l)[..], [TuEvent::Response { resp, .. }] if resp.status == 486)
        );
        // A retransmitted 486 is absorbed and ACKed again.
        l.handle_response(t0 + ms(6000), busy, udp());
        assert_eq!(transmits(&mut l).len(), 1);
        assert!(events(&mut l).is_empty());
        // Timer D: 32 s.
        let log = run_until(&mut l, t0, t0 + Duration::from_secs(60));
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, ms(5000) + Duration::from_secs(32));
        assert_eq!(log[0].2, [TuEvent::Terminated { tx }]);
    }

    #[test]
    fn invite_client_2xx_enters_accepted_and_passes_every_2xx_up() {
        let mut l = layer();
        let t0 = Instant::now();
        let inv = invite(&new_branch());
        let tx = l.send_request(t0, inv.clone(), udp()).unwrap();
        transmits(&mut l);
        let ok = answer(&inv, 200);
        l.handle_response(t0 + ms(100), ok.clone(), udp());
        assert!(
            transmits(&mut l).is_empty(),
            "no ACK for a 2xx from the transaction"
        );
        assert_eq!(events(&mut l).len(), 1);
        l.handle_response(t0 + ms(600), ok, udp());
        assert!(
            matches!(&events(&mut l)[..], [TuEvent::Response { resp, .. }] if resp.status == 200)
        );
        // A late non-2xx is dropped in Accepted.
        l.handle_response(t0 + ms(700), answer(&inv, 500), udp());
        assert!(events(&mut l).is_empty() && transmits(&mut l).is_empty());
        let log = run_until(&mut l, t0, t0 + Duration::from_secs(60));
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, ms(100) + T1 * 64, "timer M");
        assert_eq!(log[0].2, [TuEvent::Terminated { tx }]);
    }

    // ---- non-INVITE client ----

    #[test]
    fn non_invite_client_retransmits_capped_at_t2_until_timer_f() {
        let mut l = layer();
        let t0 = Instant::now();
        let tx = l
            .send_request(t0, req("OPTIONS", &new_branch()), udp())
            .unwrap();
        assert_eq!(tx.kind(), TxKind::ClientNonInvite);
        assert_eq!(transmits(&mut l).len(), 1);
        let log = run_until(&mut l, t0, t0 + Duration::from_secs(100));
        let sends: Vec<Duration> = log
            .iter()
            .filter(|(_, ts, _)| !ts.is_empty())
            .map(|(at, _, _)| *at)
            .collect();
        let mut expected = vec![ms(500), ms(1500), ms(3500), ms(7500)];
        let mut t = ms(7500) + T2;
        while t < T1 * 64 {
            expected.push(t);
            t += T2;
        }
        assert_eq!(sends, expected);
        let (at, _, evs) = log.last().unwrap();
        assert_eq!(*at, T1 * 64, "timer F");
        assert_eq!(evs, &[TuEvent::Timeout { tx }, TuEvent::Terminated { tx }]);
    }

    #[test]
    fn non_invite_client_proceeding_retransmits_every_t2_then_timer_k() {
        let mut l = layer();
        let t0 = Instant::now();
        let r = req("REGISTER", &new_branch());
        let tx = l.send_request(t0, r.clone(), udp()).unwrap();
        transmits(&mut l);
        l.handle_response(t0 + ms(100), answer(&r, 100), udp());
        assert_eq!(events(&mut l).len(), 1);
        // Timer E keeps its first value (T1), then T2 in Proceeding.
        let log = run_until(&mut l, t0, t0 + ms(9000));
        let sends: Vec<Duration> = log.iter().map(|(at, _, _)| *at).collect();
        assert_eq!(sends, [ms(500), ms(4500), ms(8500)]);
        let ok = answer(&r, 200);
        l.handle_response(t0 + ms(9000), ok.clone(), udp());
        assert!(
            matches!(&events(&mut l)[..], [TuEvent::Response { resp, .. }] if resp.status == 200)
        );
        l.handle_response(t0 + ms(9100), ok, udp());
        assert!(events(&mut l).is_empty(), "retransmitted final absorbed");
        let log = run_until(&mut l, t0, t0 + Duration::from_secs(60));
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, ms(9000) + T4, "timer K");
        assert_eq!(log[0].2, [TuEvent::Terminated { tx }]);
    }

    #[test]
    fn responses_match_by_branch_and_cseq_method() {
        let mut l = layer();
        let t0 = Instant::now();
        let branch = new_branch();
        let inv = invite(&branch);
        let itx = l.send_request(t0, inv.clone(), udp()).unwrap();
        let cancel = req_with(
            "CANCEL",
            &format!(";branch={branch}"),
            1,
            "Bob <sip:bob@example.com>",
        );
        let ctx = l.send_request(t0, cancel.clone(), udp()).unwrap();
        assert_ne!(itx, ctx);
        assert_eq!(
            l.send_request(t0, cancel.clone(), udp()),
            Err(TxError::DuplicateBranch)
        );
        transmits(&mut l);
        l.handle_response(t0 + ms(10), answer(&cancel, 200), udp());
        assert!(matches!(&events(&mut l)[..], [TuEvent::Response { tx, .. }, ..] if *tx == ctx));
        l.handle_response(t0 + ms(20), answer(&inv, 487), udp());
        assert!(
            matches!(&events(&mut l)[..], [TuEvent::Response { tx, resp }] if *tx == itx && resp.status == 487)
        );
        // Same method, other branch: stray.
        l.handle_response(t0 + ms(30), answer(&invite(&new_branch()), 200), udp());
        assert!(matches!(
            &events(&mut l)[..],
            [TuEvent::StrayResponse { .. }]
        ));
        assert_eq!(l.stats().stray_responses, 1);
    }

    #[test]
    fn send_request_needs_a_magic_cookie_branch_and_no_ack() {
        let mut l = layer();
        let t0 = Instant::now();
        assert!(matches!(
            l.send_request(t0, req("OPTIONS", "z9hG4bK"), udp()),
            Err(TxError::Malformed(_))
        ));
        assert!(matches!(
            l.send_request(t0, req("OPTIONS", "old"), udp()),
            Err(TxError::Malformed(_))
        ));
        assert!(matches!(
            l.send_request(t0, req("ACK", &new_branch()), udp()),
            Err(TxError::Malformed(_))
        ));
        assert!(l.is_empty());
        let ack = req("ACK", &new_branch());
        l.send_stateless(Message::Request(ack.clone()), udp());
        assert_eq!(
            transmits(&mut l),
            [Transmit {
                dest: udp(),
                message: Message::Request(ack)
            }]
        );
    }

    // ---- INVITE server ----

    #[test]
    fn invite_server_sends_100_trying_after_200ms_unless_the_tu_answers() {
        let mut l = layer();
        let t0 = Instant::now();
        l.handle_request(t0, invite("z9hG4bKa"), udp()).unwrap();
        let tx = new_server_tx(&events(&mut l));
        assert_eq!(tx.kind(), TxKind::ServerInvite);
        assert!(transmits(&mut l).is_empty());
        assert_eq!(l.poll_timeout(), Some(t0 + ms(200)));
        l.handle_timeout(t0 + ms(200));
        let ts = transmits(&mut l);
        assert_eq!(statuses(&ts), [100]);
        assert_eq!(ts[0].dest, udp());

        // The TU answers first: no 100.
        l.handle_request(t0, invite("z9hG4bKb"), udp()).unwrap();
        let tx = new_server_tx(&events(&mut l));
        l.send_response(t0 + ms(50), &tx, response(&invite("z9hG4bKb"), 180))
            .unwrap();
        assert_eq!(statuses(&transmits(&mut l)), [180]);
        l.handle_timeout(t0 + ms(300));
        assert!(transmits(&mut l).is_empty());

        // trying_delay zero: at once.
        let mut l = TransactionLayer::with_config(LayerConfig {
            trying_delay: Duration::ZERO,
            ..LayerConfig::default()
        });
        l.handle_request(t0, invite("z9hG4bKc"), udp()).unwrap();
        assert_eq!(statuses(&transmits(&mut l)), [100]);
    }

    #[test]
    fn invite_server_retransmits_non_2xx_per_timer_g_until_ack_then_timer_i() {
        let mut l = layer();
        let t0 = Instant::now();
        let inv = invite("z9hG4bKg1");
        l.handle_request(t0, inv.clone(), udp()).unwrap();
        let tx = new_server_tx(&events(&mut l));
        // A retransmitted INVITE before any answer gets the 100 at once.
        l.handle_request(t0 + ms(100), inv.clone(), udp()).unwrap();
        assert_eq!(statuses(&transmits(&mut l)), [100]);
        assert_eq!(l.stats().retransmissions_absorbed, 1);
        let busy = answer(&inv, 486);
        l.send_response(t0 + ms(1000), &tx, busy.clone()).unwrap();
        assert_eq!(statuses(&transmits(&mut l)), [486]);
        assert!(l.send_response(t0 + ms(1000), &tx, busy.clone()).is_err());
        let log = run_until(&mut l, t0, t0 + ms(1000 + 12_000));
        let sends: Vec<Duration> = log.iter().map(|(at, _, _)| *at).collect();
        // G: T1, 2T1, 4T1, then capped at T2.
        assert_eq!(sends, [1500, 2500, 4500, 8500, 12500].map(ms));
        // A retransmitted INVITE gets the final again.
        l.handle_request(t0 + ms(12_600), inv.clone(), udp())
            .unwrap();
        assert_eq!(statuses(&transmits(&mut l)), [486]);
        // The ACK (same branch) is absorbed: no event, no more retransmissions.
        let ack = req_with(
            "ACK",
            ";branch=z9hG4bKg1",
            1,
            "Bob <sip:bob@example.com>;tag=far",
        );
        l.handle_request(t0 + ms(13_000), ack.clone(), udp())
            .unwrap();
        assert!(events(&mut l).is_empty());
        assert_eq!(l.stats().acks_absorbed, 1);
        l.handle_request(t0 + ms(13_100), ack, udp()).unwrap();
        assert!(
            events(&mut l).is_empty(),
            "ACK retransmission absorbed in Confirmed"
        );
        let log = run_until(&mut l, t0, t0 + Duration::from_secs(100));
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].0, ms(13_000) + T4, "timer I");
        assert_eq!(log[0].2, [TuEvent::Terminated { tx }]);
    }

    #[test]
    fn invite_server_timer_h_fires_without_ack() {
        let mut l = layer();
        let t0 = Instant::now();
        let inv = invite("z9hG4bKh1");
        l.handle_request(t0, inv.clone(), udp()).unwrap();
        let tx = new_server_tx(&events(&mut l));
        l.send_response(t0, &tx, answer(&inv, 603)).unwrap();
        let log = run_until(&mut l, t0, t0 + Duration::from_secs(100));
        let (at, _, evs) = log.last().unwrap();
        assert_eq!(*at, T1 * 64);
        assert_eq!(evs, &[TuEvent::Timeout { tx }, TuEvent::Terminated { tx }]);
        assert!(l.is_empty());
    }

    #[test]
    fn invite_server_2xx_enters_accepted_rfc6026() {
        let mut l = layer();
        let t0 = Instant::now();
        let inv = invite("z9hG4bKok1");
        l.handle_request(t0, inv.clone(), udp()).unwrap();
        let tx = new_server_tx(&events(&mut l));
        let ok = answer(&inv, 200);
        l.send_response(t0 + ms(10), &tx, ok.clone()).unwrap();
        assert_eq!(statuses(&transmits(&mut l)), [200]);
        // Retransmitted INVITEs are absorbed without resending anything.
        l.handle_request(t0 + ms(500), inv.clone(), udp()).unwrap();
        assert!(transmits(&mut l).is_empty() && events(&mut l).is_empty());
        // The TU retransmits its 2xx itself (RFC 3261 §13.3.1.4).
        l.send_response(t0 + ms(510), &tx, ok).unwrap();
        assert_eq!(statuses(&transmits(&mut l)), [200]);
        assert!(l
            .send_response(t0 + ms(510), &tx, answer(&inv, 500))
            .is_err());
        // The ACK for the 2xx (its own branch) goes to the TU.
        let ack = req_with(
            "ACK",
            ";branch=z9hG4bKack2",
            1,
            "Bob <sip:bob@example.com>;tag=far",
        );
        l.handle_request(t0 + ms(600), ack.clone(), udp()).unwrap();
        assert!(matches!(&events(&mut l)[..], [TuEvent::AckFor2xx { req, .. }] if *req == ack));
        // Even one that reuses the INVITE's branch (it matches the Accepted transaction).
        let ack = req_with(
            "ACK",
            ";branch=z9hG4bKok1",
            1,
            "Bob <sip:bob@example.com>;tag=far",
        );
        l.handle_request(t0 + ms(700), ack, udp()).unwrap();
        assert!(matches!(&events(&mut l)[..], [TuEvent::AckFor2xx { .. }]));
        let log = run_until(&mut l, t0, t0 + Duration::from_secs(100));
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, ms(10) + T1 * 64, "timer L");
        assert_eq!(log[0].2, [TuEvent::Terminated { tx }]);
    }

    // ---- non-INVITE server ----

    #[test]
    fn non_invite_server_absorbs_retransmissions_and_resends_the_last_response() {
        let mut l = layer();
        let t0 = Instant::now();
        let r = req("OPTIONS", "z9hG4bKn1");
        l.handle_request(t0, r.clone(), udp()).unwrap();
        let tx = new_server_tx(&events(&mut l));
        assert_eq!(tx.kind(), TxKind::ServerNonInvite);
        // Trying: absorbed silently.
        l.handle_request(t0 + ms(500), r.clone(), udp()).unwrap();
        assert!(transmits(&mut l).is_empty() && events(&mut l).is_empty());
        l.send_response(t0 + ms(600), &tx, answer(&r, 100)).unwrap();
        assert_eq!(statuses(&transmits(&mut l)), [100]);
        l.handle_request(t0 + ms(700), r.clone(), udp()).unwrap();
        assert_eq!(
            statuses(&transmits(&mut l)),
            [100],
            "Proceeding: last provisional again"
        );
        l.send_response(t0 + ms(800), &tx, answer(&r, 200)).unwrap();
        assert_eq!(statuses(&transmits(&mut l)), [200]);
        assert_eq!(
            l.send_response(t0 + ms(800), &tx, answer(&r, 200)),
            Err(TxError::InvalidState(
                "the request already has a final response"
            ))
        );
        l.handle_request(t0 + ms(1500), r.clone(), udp()).unwrap();
        assert_eq!(statuses(&transmits(&mut l)), [200]);
        assert!(events(&mut l).is_empty());
        assert_eq!(l.stats().retransmissions_absorbed, 3);
        let log = run_until(&mut l, t0, t0 + Duration::from_secs(100));
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, ms(800) + T1 * 64, "timer J");
        assert_eq!(log[0].2, [TuEvent::Terminated { tx }]);
        assert_eq!(
            l.send_response(t0, &tx, answer(&r, 200)),
            Err(TxError::UnknownTransaction)
        );
        // After J the same request is new again.
        l.handle_request(t0 + Duration::from_secs(100), r, udp())
            .unwrap();
        assert!(matches!(&events(&mut l)[..], [TuEvent::Request { .. }]));
    }

    #[test]
    fn non_invite_server_times_out_when_the_tu_never_answers() {
        let mut l = layer();
        let t0 = Instant::now();
        l.handle_request(t0, req("BYE", "z9hG4bKnoanswer"), udp())
            .unwrap();
        let tx = new_server_tx(&events(&mut l));
        let log = run_until(&mut l, t0, t0 + Duration::from_secs(100));
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, T1 * 64);
        assert_eq!(
            log[0].2,
            [TuEvent::Timeout { tx }, TuEvent::Terminated { tx }]
        );
    }

    // ---- matching ----

    #[test]
    fn cancel_is_its_own_transaction_and_names_its_invite() {
        let mut l = layer();
        let t0 = Instant::now();
        l.handle_request(t0, invite("z9hG4bKc1"), udp()).unwrap();
        let itx = new_server_tx(&events(&mut l));
        let cancel = req("CANCEL", "z9hG4bKc1");
        l.handle_request(t0 + ms(10), cancel.clone(), udp())
            .unwrap();
        let evs = events(&mut l);
        let [TuEvent::Request {
            tx: ctx,
            req: got,
            cancels,
            ..
        }] = &evs[..]
        else {
            panic!("{evs:?}")
        };
        assert_eq!(ctx.kind(), TxKind::ServerNonInvite);
        assert_ne!(*ctx, itx);
        assert_eq!(got.method, Method::Cancel);
        assert_eq!(*cancels, Some(itx));
        assert_eq!(l.len(), 2);
        // A retransmitted CANCEL is absorbed by the CANCEL transaction.
        l.handle_request(t0 + ms(20), cancel, udp()).unwrap();
        assert!(events(&mut l).is_empty());
        // A CANCEL for nothing live.
        l.handle_request(t0 + ms(30), req("CANCEL", "z9hG4bKunknown"), udp())
            .unwrap();
        assert!(matches!(
            &events(&mut l)[..],
            [TuEvent::Request { cancels: None, .. }]
        ));
        // Another sent-by is another transaction.
        let mut other = req("CANCEL", "z9hG4bKc1");
        let via = other.headers.get_mut(&HeaderName::Via).unwrap();
        *via = via.replace("192.0.2.1:5060", "192.0.2.77:5060");
        l.handle_request(t0 + ms(40), other, udp()).unwrap();
        assert!(matches!(
            &events(&mut l)[..],
            [TuEvent::Request { cancels: None, .. }]
        ));
    }

    #[test]
    fn rfc2543_requests_without_a_cookie_branch_match_by_dialog_fields() {
        let t0 = Instant::now();
        for via_params in ["", ";branch=z9hG4bK", ";branch=2543legacy"] {
            let mut l = layer();
            let to = "Bob <sip:bob@example.com>";
            let inv = req_with("INVITE", via_params, 5, to);
            l.handle_request(t0, inv.clone(), udp()).unwrap();
            let itx = new_server_tx(&events(&mut l));
            // Retransmission: absorbed.
            l.handle_request(t0 + ms(100), inv.clone(), udp()).unwrap();
            assert!(events(&mut l).is_empty(), "{via_params}");
            assert_eq!(statuses(&transmits(&mut l)), [100]);
            // Another CSeq is another transaction.
            l.handle_request(t0 + ms(150), req_with("INVITE", via_params, 6, to), udp())
                .unwrap();
            assert_eq!(events(&mut l).len(), 1);
            // CANCEL targets the INVITE by the same fields.
            l.handle_request(t0 + ms(200), req_with("CANCEL", via_params, 5, to), udp())
                .unwrap();
            assert!(
                matches!(&events(&mut l)[..], [TuEvent::Request { cancels: Some(t), .. }] if *t == itx)
            );
            let resp = answer(&inv, 404);
            let tag = resp.to_tag().unwrap();
            l.send_response(t0 + ms(300), &itx, resp).unwrap();
            transmits(&mut l);
            // An ACK with another To tag does not match: it goes up.
            let wrong = req_with("ACK", via_params, 5, "Bob <sip:bob@example.com>;tag=other");
            l.handle_request(t0 + ms(400), wrong, udp()).unwrap();
            assert!(
                matches!(&events(&mut l)[..], [TuEvent::AckFor2xx { .. }]),
                "{via_params}"
            );
            // The ACK with the response's To tag is absorbed.
            let ack = req_with("ACK", via_params, 5, &format!("{to};tag={tag}"));
            l.handle_request(t0 + ms(500), ack, udp()).unwrap();
            assert!(events(&mut l).is_empty(), "{via_params}");
            assert_eq!(l.stats().acks_absorbed, 1);
            let log = run_until(&mut l, t0, t0 + ms(500) + T4);
            assert!(log
                .iter()
                .any(|(_, _, evs)| evs.contains(&TuEvent::Terminated { tx: itx })));
        }
    }

    #[test]
    fn ack_without_transaction_goes_to_the_tu() {
        let mut l = layer();
        let t0 = Instant::now();
        let ack = req_with(
            "ACK",
            ";branch=z9hG4bKlone",
            1,
            "Bob <sip:bob@example.com>;tag=x",
        );
        l.handle_request(t0, ack, udp()).unwrap();
        assert!(matches!(&events(&mut l)[..], [TuEvent::AckFor2xx { .. }]));
        assert!(l.is_empty());
    }

    // ---- reliable transports ----

    #[test]
    fn reliable_transport_has_no_retransmissions_and_zero_d_i_j_k() {
        let t0 = Instant::now();
        let end = t0 + Duration::from_secs(100);

        // INVITE client: no timer A; timer B still fires.
        let mut l = layer();
        let tx = l.send_request(t0, invite(&new_branch()), tcp()).unwrap();
        assert_eq!(transmits(&mut l)[0].dest, tcp());
        let log = run_until(&mut l, t0, end);
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, T1 * 64);
        assert!(log[0].1.is_empty());
        assert_eq!(
            log[0].2,
            [TuEvent::Timeout { tx }, TuEvent::Terminated { tx }]
        );

        // INVITE client non-2xx: ACK, then terminated at once (D = 0).
        let inv = invite(&new_branch());
        let tx = l.send_request(t0, inv.clone(), tcp()).unwrap();
        transmits(&mut l);
        l.handle_response(t0, answer(&inv, 404), tcp());
        assert_eq!(transmits(&mut l).len(), 1);
        assert!(events(&mut l).ends_with(&[TuEvent::Terminated { tx }]));

        // Non-INVITE client: no timer E, K = 0.
        let r = req("OPTIONS", &new_branch());
        let tx = l.send_request(t0, r.clone(), tcp()).unwrap();
        transmits(&mut l);
        assert!(run_until(&mut l, t0, t0 + ms(31_000)).is_empty());
        l.handle_response(t0 + ms(31_000), answer(&r, 200), tcp());
        assert!(events(&mut l).ends_with(&[TuEvent::Terminated { tx }]));

        // INVITE server non-2xx: no timer G; the ACK ends it (I = 0).
        let inv = invite("z9hG4bKtcp1");
        l.handle_request(t0, inv.clone(), tcp()).unwrap();
        let tx = new_server_tx(&events(&mut l));
        l.send_response(t0, &tx, answer(&inv, 486)).unwrap();
        assert_eq!(transmits(&mut l)[0].dest, tcp());
        assert!(run_until(&mut l, t0, t0 + ms(10_000)).is_empty());
        let ack = req_with(
            "ACK",
            ";branch=z9hG4bKtcp1",
            1,
            "Bob <sip:bob@example.com>;tag=far",
        );
        l.handle_request(t0 + ms(10_000), ack, tcp()).unwrap();
        assert_eq!(events(&mut l), [TuEvent::Terminated { tx }]);

        // Non-INVITE server: J = 0.
        let r = req("OPTIONS", "z9hG4bKtcp2");
        l.handle_request(t0, r.clone(), tcp()).unwrap();
        let tx = new_server_tx(&events(&mut l));
        l.send_response(t0, &tx, answer(&r, 200)).unwrap();
        assert_eq!(events(&mut l), [TuEvent::Terminated { tx }]);
        assert!(l.is_empty());
    }

    // ---- bounds ----

    #[test]
    fn max_transactions_overload() {
        let mut l = TransactionLayer::new(TimerConfig::default(), 2);
        let t0 = Instant::now();
        l.handle_request(t0, invite("z9hG4bKo1"), udp()).unwrap();
        l.handle_request(t0, req("OPTIONS", "z9hG4bKo2"), udp())
            .unwrap();
        assert_eq!(
            l.handle_request(t0, invite("z9hG4bKo3"), udp()),
            Err(TxError::Overloaded)
        );
        assert_eq!(
            l.send_request(t0, req("OPTIONS", &new_branch()), udp()),
            Err(TxError::Overloaded)
        );
        assert_eq!(l.stats().overloaded, 2);
        assert_eq!(l.len(), 2);
        // Existing transactions still absorb retransmissions and ACKs.
        assert_eq!(l.handle_request(t0, invite("z9hG4bKo1"), udp()), Ok(()));
        let evs = events(&mut l);
        let first = new_server_tx(&evs);
        l.send_response(t0, &first, answer(&invite("z9hG4bKo1"), 486))
            .unwrap();
        let ack = req_with(
            "ACK",
            ";branch=z9hG4bKo1",
            1,
            "Bob <sip:bob@example.com>;tag=far",
        );
        assert_eq!(l.handle_request(t0, ack, udp()), Ok(()));
        assert_eq!(l.stats().acks_absorbed, 1);
        // Once transactions end there is room again.
        l.handle_timeout(t0 + Duration::from_secs(100));
        assert!(l.is_empty());
        assert_eq!(
            l.handle_request(t0 + Duration::from_secs(100), invite("z9hG4bKo3"), udp()),
            Ok(())
        );
    }

    #[test]
    fn hundred_thousand_transactions_come_and_go() {
        let n = 100_000;
        let mut l = TransactionLayer::new(TimerConfig::default(), n);
        let t0 = Instant::now();
        let base = req("OPTIONS", "z9hG4bKbase");
        for i in 0..n {
            let mut r = base.clone();
            *r.headers.get_mut(&HeaderName::Via).unwrap() =
                format!("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{i}");
            let at = t0 + Duration::from_micros(i as u64 * 50); // 20 000 per second
            l.handle_request(at, r, udp()).unwrap();
            let Some(TuEvent::Request { tx, req, .. }) = l.poll_event() else {
                panic!("no request event")
            };
            l.send_response(at, &tx, response(&req, 200)).unwrap();
            assert!(l.poll_transmit().is_some());
        }
        assert_eq!(l.len(), n);
        assert!(
            l.timer_entries() <= n,
            "{} timer entries",
            l.timer_entries()
        );
        l.handle_timeout(t0 + Duration::from_secs(60));
        assert!(l.is_empty());
        assert_eq!(l.timer_entries(), 0);
        assert_eq!(std::iter::from_fn(|| l.poll_event()).count(), n);
    }
}
