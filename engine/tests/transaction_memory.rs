//! Heap held per live transaction, measured with a counting allocator (its own test binary,
//! so no other test allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: defers to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

mod transaction {
    use super::LIVE;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    use switchboard_engine::sip::build::response;
    use switchboard_engine::sip::{HeaderName, Headers, Method, Request};
    use switchboard_engine::transaction::{
        Peer, TimerConfig, TransactionLayer, TransportKind, TuEvent,
    };

    fn options(i: usize) -> Request {
        let mut headers = Headers::new();
        headers.push(
            HeaderName::Via,
            format!("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{i:016x};rport"),
        );
        headers.push(HeaderName::MaxForwards, "70");
        headers.push(HeaderName::From, "<sip:monitor@example.com>;tag=8f3a9c");
        headers.push(HeaderName::To, "<sip:switchboard@example.com>");
        headers.push(HeaderName::CallId, format!("{i:x}-4b1c9e@192.0.2.1"));
        headers.push(HeaderName::CSeq, "1 OPTIONS");
        Request {
            method: Method::Options,
            uri: "sip:switchboard@example.com".into(),
            headers,
            body: Default::default(),
        }
    }

    #[test]
    fn memory_per_completed_non_invite_server_transaction() {
        let n = 50_000;
        let peer = Peer::new(TransportKind::Udp, "192.0.2.1:5060".parse().unwrap());
        let t0 = Instant::now();
        let mut layer = TransactionLayer::new(TimerConfig::default(), n);
        let before = LIVE.load(Ordering::Relaxed);
        for i in 0..n {
            layer.handle_request(t0, options(i), peer).unwrap();
            let Some(TuEvent::Request { tx, req, .. }) = layer.poll_event() else {
                panic!("no request event")
            };
            layer.send_response(t0, &tx, response(&req, 200)).unwrap();
            drop(req);
            while layer.poll_transmit().is_some() {}
        }
        let per_tx = (LIVE.load(Ordering::Relaxed) - before) / n as isize;
        eprintln!("{per_tx} bytes of heap per Completed non-INVITE server transaction");
        assert!(per_tx < 2048, "{per_tx} bytes per transaction");
        layer.handle_timeout(t0 + Duration::from_secs(64));
        assert!(layer.is_empty());
    }
}
