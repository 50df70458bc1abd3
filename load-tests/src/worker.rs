//! The thin I/O shell around an [`Agent`]: one non-blocking UDP socket read and written in
//! batches ([`crate::mmsg`]), `poll(2)` until the agent's next timer or a datagram, and the
//! run's deadlines.

use crate::agent::{Agent, MediaEvent};
use crate::mmsg::{Receiver, Sender, BATCH};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// When a worker stops starting calls, and when it gives up on the live ones.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// Stop starting calls; hang up the live ones.
    pub drain_at: Instant,
    /// Count what is still live as unfinished and return.
    pub abandon_at: Instant,
}

/// Most datagrams read in one go before timers get a turn.
const RECV_BATCH: usize = 256;
/// `recvmmsg` calls per read round.
const RECV_ROUNDS: usize = RECV_BATCH / BATCH;
/// Longest sleep, so a stop request is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// Under load (datagrams were waiting) the worker sleeps this long instead of waking for each
/// datagram: waking per message cost more than the SIP work itself (a third of the CPU went to
/// context switches at 8 000 CPS), and 1 ms batches are well inside SIP's timers.
const BUSY_TICK: Duration = Duration::from_millis(1);
/// Timers (the pacer's next call above all) are served at most once per tick while the socket
/// is quiet: at thousands of calls per second the next call is due every few hundred
/// microseconds, and waking for each one cost a context switch per call (the UAC spent more
/// CPU than the UAS for the same SIP work). Due calls are started together on waking, so the
/// rate is unchanged; a datagram still wakes the worker at once.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// Runs `agent` on `socket` until it has finished, the stop flag is raised (then it drains),
/// or the abandon deadline passes. Media changes go to `on_media`.
pub fn run(
    socket: &UdpSocket,
    agent: &mut dyn Agent,
    stop: &AtomicBool,
    deadlines: Deadlines,
    on_media: &mut dyn FnMut(MediaEvent),
) -> std::io::Result<()> {
    socket.set_nonblocking(true)?;
    let mut rx = Receiver::default();
    let mut tx = Io {
        sender: Sender::default(),
        // One encoding buffer for every datagram sent.
        out: Vec::with_capacity(2048),
    };
    let mut draining = false;
    loop {
        let now = Instant::now();
        if !draining && (now >= deadlines.drain_at || stop.load(Ordering::Relaxed)) {
            draining = true;
            agent.drain(now);
        }
        if now >= deadlines.abandon_at {
            agent.abandon();
            tx.flush(socket, agent, on_media);
            return Ok(());
        }
        let mut received = 0;
        // True when the batch ended full: more datagrams may be waiting.
        let mut more = true;
        for _ in 0..RECV_ROUNDS {
            // An error is ICMP port unreachable and the like, which the transaction timers
            // deal with.
            let n = rx.recv(socket).unwrap_or(0);
            for i in 0..n {
                if let Some((data, from)) = rx.get(i) {
                    agent.handle_datagram(now, data, from);
                }
            }
            received += n;
            // Answers go out with each batch read, as they did datagram by datagram.
            tx.flush(socket, agent, on_media);
            if n < BATCH {
                more = false;
                break;
            }
        }
        agent.handle_timeout(now);
        tx.flush(socket, agent, on_media);
        if agent.finished() {
            return Ok(());
        }
        let wait = agent
            .poll_timeout()
            .map_or(MAX_WAIT, |t| t.saturating_duration_since(Instant::now()))
            .min(MAX_WAIT);
        // Never sleep while datagrams wait: a full batch is read again at once (sleeping
        // after it capped a worker at RECV_BATCH datagrams per tick, and the backlog then
        // turned into drops and retransmissions well below the CPU's limit).
        if wait.is_zero() || more {
            continue;
        }
        if received > 0 {
            std::thread::sleep(BUSY_TICK);
        } else {
            wait_readable(socket, wait.max(TIMER_TICK).min(MAX_WAIT));
        }
    }
}

/// What a worker sends with.
struct Io {
    sender: Sender,
    out: Vec<u8>,
}

impl Io {
    /// Sends everything the agent has to send (in `sendmmsg` batches) and hands on its media
    /// changes.
    fn flush(
        &mut self,
        socket: &UdpSocket,
        agent: &mut dyn Agent,
        on_media: &mut dyn FnMut(MediaEvent),
    ) {
        while let Some(dest) = agent.poll_transmit_into(&mut self.out) {
            self.sender.push(socket, &self.out, dest);
        }
        // A full send buffer drops datagrams: SIP retransmissions cover them.
        self.sender.flush(socket);
        while let Some(ev) = agent.poll_media() {
            on_media(ev);
        }
    }
}

/// Sleeps until `socket` is readable or `wait` has passed.
pub fn wait_readable(socket: &UdpSocket, wait: Duration) {
    let mut fds = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
    };
    // SAFETY: `fds` is one valid pollfd for the duration of the call, the timeout points to a
    // valid timespec and no signal mask is passed.
    unsafe {
        libc::ppoll(&mut fds, 1, &ts, std::ptr::null());
    }
}
