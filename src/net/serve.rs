//! Accepting and timing connections for secretdrop's two HTTP servers (the webhook's HTTPS
//! port and the sidecar's `--listen`), so that whoever can reach a port cannot exhaust the
//! process: not its file descriptors, not its memory, not its one runtime thread.
//!
//! This module owns the accept loop, the connection cap and the per-connection clock; the
//! servers own their protocol (TLS, routes, bodies) and report the phases of each connection
//! through [`Conn`].
//!
//! Invariants:
//! * At most [`Limits::connections`] accepted connections are open at once, and that cap is
//!   kept below the soft `RLIMIT_NOFILE` so the rest of the process (Vault, files, watches)
//!   always has descriptors. A connection arriving at the cap displaces one that is not being
//!   answered (a TLS handshake that never completes, a request head or body still trickling
//!   in, an idle keep-alive): one of the peer address that holds the most connections (the
//!   newcomer's own address when it is among those), and of that peer's the one that has gone
//!   longest without progress. If every open connection is being answered, the newcomer is
//!   closed at once.
//!   So a connection makes room for another peer's newcomer only while its own peer holds more
//!   connections than the newcomer's: one address flooding the port with empty connections
//!   displaces its own, however young the other peers' connections are, and a health probe
//!   from another address gets its answer. The probe can lose its place to other addresses
//!   only when every slot is held by a different one. Peers are told apart by IP address
//!   (IPv4-mapped IPv6 as IPv4), so one host with many addresses counts as many peers: keep
//!   the ports reachable only by who needs them (a NetworkPolicy).
//! * Every phase of a connection must end within [`Limits::timeout`] or the connection is
//!   closed: accept → complete request head (the TLS handshake included); head → the server
//!   starts answering ([`Conn::request_started`] then [`Conn::answering`]: the body and any
//!   wait for capacity); answering → answered; answered → next head (writing the response,
//!   then idle keep-alive). One clock per connection governs all of them, hyper's own timers
//!   are not used.
//! * Each socket's kernel buffers are fixed at [`SOCKET_BUFFER`] each way (doubled by Linux),
//!   not autotuned up to megabytes: data a client pushes that the server does not read yet,
//!   and an answer the client does not read, are charged to the pod's memory cgroup too.
//! * accept(2) errors never spin the runtime. Out of descriptors (EMFILE), an idle connection
//!   is closed to make room, chosen as at the cap; when there is none, and on other
//!   shortages (ENFILE, ENOBUFS, ENOMEM), accepting pauses 100 ms, doubling to 1 s, until an
//!   accept succeeds again.
//! * Nothing a client does here logs at its rate: closed and displaced connections log at
//!   debug only, and the warning that accepting pauses goes through the rate limit of
//!   [`crate::logging::limited`], as do the webhook's 413 and 400 warnings.

use std::cmp::Reverse;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The first and the longest pause after an accept error that is not about one connection.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Whatever the fd limit, a prober and one real client can be connected.
const MIN_CONNECTIONS: usize = 2;
/// hyper's read buffer per connection. Request heads are a few hundred bytes; bodies are
/// streamed through it in pieces this large (hyper's default lets it grow to ~400 KiB).
pub const READ_BUFFER: usize = 16 * 1024;

/// Kernel receive and send buffer of every accepted socket; Linux doubles it for its own
/// bookkeeping, so at the webhook's 64 connections at most 4 MiB waits unread each way. A
/// 64 KiB window still moves a 3 MiB review in milliseconds on a cluster network.
pub const SOCKET_BUFFER: u32 = 32 * 1024;

/// A listening socket for these servers: accepted sockets inherit its fixed buffer sizes.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_recv_buffer_size(SOCKET_BUFFER)?;
    socket.set_send_buffer_size(SOCKET_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The error of a failed [`bind`]: a runtime failure (exit 1) that says what to change. A
/// port in use or a privileged port is not bad usage of secretdrop, so no usage hint follows.
pub fn bind_error(addr: SocketAddr, e: io::Error) -> crate::error::Error {
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => {
            ": another process (or another secretdrop in this pod) listens there; choose a free \
             port with --listen"
        }
        io::ErrorKind::PermissionDenied => {
            ": ports below 1024 need CAP_NET_BIND_SERVICE; choose a port above 1024"
        }
        io::ErrorKind::AddrNotAvailable => ": no interface of this host has that address",
        _ => "",
    };
    crate::error::Error::Runtime(format!("cannot listen on {addr} (--listen): {e}{hint}"))
}

/// How much one server allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most.
    pub connections: usize,
    /// The longest any phase of a connection may take (see the module documentation).
    pub timeout: Duration,
}

impl Limits {
    /// `wanted` connections, or fewer when the soft fd limit leaves less than `keep_free`
    /// descriptors beside them; never fewer than two.
    pub fn new(wanted: usize, keep_free: usize, timeout: Duration) -> Limits {
        let connections = match fd_limit() {
            Some(soft) => wanted.min(soft.saturating_sub(keep_free as u64) as usize),
            None => wanted,
        };
        Limits {
            connections: connections.max(MIN_CONNECTIONS),
            timeout,
        }
    }
}

/// The soft `RLIMIT_NOFILE`, if it is finite and can be read.
fn fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// hyper's HTTP/1 settings shared by both servers: keep-alive on, a small read buffer, no
/// timer (the connection clock here replaces hyper's header timeout).
pub fn http1() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.keep_alive(true).max_buf_size(READ_BUFFER);
    b
}

/// One open connection, as its server sees it: the server reports progress through it.
#[derive(Clone)]
pub struct Conn {
    slot: Arc<Slot>,
    timeout: Duration,
}

impl Conn {
    /// A request head has arrived: the next phase (its body, waiting for capacity) gets a
    /// full timeout.
    pub fn request_started(&self) {
        self.slot.set(Instant::now() + self.timeout, false);
    }

    /// The server is computing an answer: until the guard drops the connection cannot be
    /// displaced, and the answer must be ready within the timeout. When it drops, writing
    /// the response and the idle time after it get a full timeout.
    pub fn answering(&self) -> Answering {
        self.slot.set(Instant::now() + self.timeout, true);
        Answering(self.clone())
    }
}

/// See [`Conn::answering`].
pub struct Answering(Conn);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.slot.set(Instant::now() + self.0.timeout, false);
    }
}

struct Slot {
    /// The client's address: connections are displaced from the peer holding the most.
    peer: IpAddr,
    state: Mutex<SlotState>,
    /// Signalled when the connection is displaced to make room for a newer one.
    displaced: Notify,
}

#[derive(Clone, Copy)]
struct SlotState {
    deadline: Instant,
    answering: bool,
}

impl Slot {
    fn set(&self, deadline: Instant, answering: bool) {
        if let Ok(mut s) = self.state.lock() {
            *s = SlotState {
                deadline,
                answering,
            };
        }
    }

    fn get(&self) -> SlotState {
        match self.state.lock() {
            Ok(s) => *s,
            // A poisoned lock cannot happen (no code panics while holding it); expire.
            Err(_) => SlotState {
                deadline: Instant::now(),
                answering: false,
            },
        }
    }
}

/// The open connections of one server.
struct Table {
    limit: usize,
    slots: Mutex<Vec<Arc<Slot>>>,
}

impl Table {
    /// Registers a new connection from `peer`, displacing one if the table is full. `None`:
    /// full of connections being answered; `Some((slot, displaced))` otherwise.
    fn admit(&self, peer: IpAddr, deadline: Instant) -> Option<(Arc<Slot>, bool)> {
        let mut slots = self.slots.lock().ok()?;
        let displaced = slots.len() >= self.limit;
        if displaced && !Table::displace(&mut slots, Some(peer)) {
            return None;
        }
        let slot = Arc::new(Slot {
            peer,
            state: Mutex::new(SlotState {
                deadline,
                answering: false,
            }),
            displaced: Notify::new(),
        });
        slots.push(slot.clone());
        Some((slot, displaced))
    }

    /// Closes a connection not being answered, of the peer holding the most, to make room
    /// without a newcomer (out of descriptors); false if there is none.
    fn displace_one(&self) -> bool {
        self.slots
            .lock()
            .is_ok_and(|mut s| Table::displace(&mut s, None))
    }

    /// Closes the connection that makes room for a newcomer from `newcomer` (see the module
    /// documentation): not being answered; of the peer holding the most connections, the
    /// newcomer's own peer on a tie; the least active of that peer's. False if every
    /// connection is being answered.
    fn displace(slots: &mut Vec<Arc<Slot>>, newcomer: Option<IpAddr>) -> bool {
        // O(cap × peers) per displacement: the cap is small (64 at most).
        let mut held: Vec<(IpAddr, usize)> = Vec::new();
        for s in slots.iter() {
            match held.iter_mut().find(|(p, _)| *p == s.peer) {
                Some((_, n)) => *n += 1,
                None => held.push((s.peer, 1)),
            }
        }
        let holds = |peer: IpAddr| held.iter().find(|(p, _)| *p == peer).map_or(0, |(_, n)| *n);
        let victim = slots
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.peer, s.get()))
            .filter(|(_, _, s)| !s.answering)
            .min_by_key(|(_, peer, s)| (Reverse(holds(*peer)), newcomer != Some(*peer), s.deadline))
            .map(|(i, _, _)| i);
        match victim {
            Some(i) => {
                slots.swap_remove(i).displaced.notify_one();
                true
            }
            None => false,
        }
    }

    fn remove(&self, slot: &Arc<Slot>) {
        if let Ok(mut slots) = self.slots.lock() {
            if let Some(i) = slots.iter().position(|s| Arc::ptr_eq(s, slot)) {
                slots.swap_remove(i);
            }
        }
    }
}

/// Takes a connection out of the table when its task ends, however it ends.
struct Leave(Arc<Table>, Arc<Slot>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.remove(&self.1);
    }
}

/// Resolves when the connection's current deadline has passed or it has been displaced.
async fn watchdog(slot: &Slot) {
    loop {
        let deadline = slot.get().deadline;
        tokio::select! {
            _ = slot.displaced.notified() => return,
            _ = tokio::time::sleep_until(deadline) => {
                // The deadline only moves later; sleep again if it did meanwhile.
                if slot.get().deadline <= Instant::now() {
                    return;
                }
            }
        }
    }
}

/// Errors of accept(2) that concern only the connection being accepted: the next accept may
/// succeed at once. Everything else (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...) is backed off.
fn about_one_connection(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EINTR
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::EHOSTUNREACH
                | libc::ENONET
                | libc::ENOPROTOOPT
                | libc::EOPNOTSUPP
        )
    )
}

/// Accepts connections on `listener` forever, each served by `handle(stream, conn)` in its
/// own task, within `limits` (see the module documentation).
pub async fn serve<H, F>(listener: TcpListener, limits: Limits, handle: H)
where
    H: Fn(TcpStream, Conn) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let table = Arc::new(Table {
        limit: limits.connections,
        slots: Mutex::new(Vec::with_capacity(limits.connections)),
    });
    let mut backoff: Option<Duration> = None;
    // Whether this backoff episode's warning was logged (not rate-limited away): only then
    // is its end worth a line.
    let mut warned = false;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok((stream, addr)) => {
                if backoff.take().is_some() && std::mem::take(&mut warned) {
                    tracing::info!("accepting connections again");
                }
                (stream, addr.ip().to_canonical())
            }
            Err(e) if about_one_connection(&e) => continue,
            // Out of descriptors while our own idle connections hold some: give one back and
            // accept at once (each round accepts a connection, so this cannot spin).
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) && table.displace_one() => {
                tracing::debug!("out of file descriptors; closed an idle connection of the peer holding the most");
                tokio::task::yield_now().await;
                continue;
            }
            Err(e) => {
                let pause = backoff.map_or(BACKOFF_FIRST, |d| (d * 2).min(BACKOFF_MAX));
                if backoff.is_none() {
                    // A client flood can end and restart episodes many times a second.
                    warned = crate::logging::limited(
                        crate::logging::Flood::Accept,
                        || tracing::warn!(error = %e, "cannot accept connections; retrying every {}-{} ms", BACKOFF_FIRST.as_millis(), BACKOFF_MAX.as_millis()),
                    );
                }
                backoff = Some(pause);
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let Some((slot, displaced)) = table.admit(peer, Instant::now() + limits.timeout) else {
            tracing::debug!(%peer, "every connection is being answered; closing a new one");
            continue;
        };
        if displaced {
            tracing::debug!(%peer, "at the connection cap; closed the least active connection of the peer holding the most");
        }
        let conn = Conn {
            slot: slot.clone(),
            timeout: limits.timeout,
        };
        let served = handle(stream, conn);
        let leave = Leave(table.clone(), slot);
        tokio::spawn(async move {
            tokio::select! {
                _ = served => {}
                _ = watchdog(&leave.1) => {}
            }
            drop(leave);
        });
        if displaced {
            // Let the displaced connection's task run and close its socket before the next
            // accept needs a descriptor.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(limit: usize) -> Table {
        Table {
            limit,
            slots: Mutex::new(Vec::new()),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn holds(t: &Table, x: &Arc<Slot>) -> bool {
        t.slots.lock().unwrap().iter().any(|s| Arc::ptr_eq(s, x))
    }

    #[test]
    fn at_the_cap_the_least_active_idle_connection_makes_room() {
        let t = table(3);
        let now = Instant::now();
        let s = |secs| now + Duration::from_secs(secs);
        let p = ip(1);
        let (a, _) = t.admit(p, s(5)).unwrap();
        let (b, _) = t.admit(p, s(3)).unwrap();
        let (c, _) = t.admit(p, s(4)).unwrap();
        b.set(s(1), true); // being answered: never displaced, however old
        let (d, displaced) = t.admit(p, s(10)).unwrap();
        assert!(displaced);
        let left = t.slots.lock().unwrap().clone();
        assert!(left.iter().any(|x| Arc::ptr_eq(x, &b)));
        assert!(left.iter().any(|x| Arc::ptr_eq(x, &a)));
        assert!(
            !left.iter().any(|x| Arc::ptr_eq(x, &c)),
            "c had the oldest clock"
        );
        assert!(left.iter().any(|x| Arc::ptr_eq(x, &d)));
        // All answering: the newcomer is refused.
        for x in [&a, &d] {
            x.set(s(9), true);
        }
        assert!(t.admit(p, s(10)).is_none());
        assert!(t.admit(ip(2), s(10)).is_none());
        t.remove(&a);
        assert!(t.admit(p, s(10)).is_some());
    }

    #[test]
    fn a_peers_flood_displaces_its_own_connections_not_another_peers_young_one() {
        let t = table(4);
        let now = Instant::now();
        let s = |secs| now + Duration::from_secs(secs);
        let (flood, probe) = (ip(2), ip(1));
        for i in 0..4 {
            t.admit(flood, s(i)).unwrap();
        }
        // The probe arrives: the flood holds the most, its least active goes.
        let (p, displaced) = t.admit(probe, s(1)).unwrap();
        assert!(displaced);
        // More of the flood, each younger than the probe: the flood displaces its own, and
        // the probe stays although it is now the least active connection of all.
        for i in 0..20 {
            let (_, displaced) = t.admit(flood, s(100 + i)).unwrap();
            assert!(displaced);
            assert!(holds(&t, &p), "the probe was displaced by the flood");
        }
        // A second flooding address: the first one holds the most and loses a connection.
        t.admit(ip(3), s(200)).unwrap();
        let peers: Vec<IpAddr> = t.slots.lock().unwrap().iter().map(|x| x.peer).collect();
        assert_eq!(
            peers.iter().filter(|x| **x == flood).count(),
            2,
            "{peers:?}"
        );
        assert!(holds(&t, &p));
        // The probe's peer opens another: the flood still holds the most and gives way.
        let (p2, _) = t.admit(probe, s(300)).unwrap();
        assert!(holds(&t, &p) && holds(&t, &p2));
        // Now the probe's peer holds the most: its own least active connection makes room.
        let (p3, _) = t.admit(probe, s(301)).unwrap();
        assert!(
            !holds(&t, &p),
            "the probe's peer displaced its own least active"
        );
        assert!(holds(&t, &p2) && holds(&t, &p3));
        // Out of descriptors (no newcomer): the peer holding the most gives one back.
        assert!(t.displace_one());
        let peers: Vec<IpAddr> = t.slots.lock().unwrap().iter().map(|x| x.peer).collect();
        assert_eq!(
            peers.iter().filter(|x| **x == probe).count(),
            1,
            "{peers:?}"
        );
    }

    #[test]
    fn when_every_slot_is_another_address_the_least_active_makes_room() {
        let t = table(3);
        let now = Instant::now();
        let s = |secs| now + Duration::from_secs(secs);
        let (a, _) = t.admit(ip(1), s(5)).unwrap();
        let (b, _) = t.admit(ip(2), s(3)).unwrap();
        let (c, _) = t.admit(ip(3), s(4)).unwrap();
        let (_, displaced) = t.admit(ip(4), s(10)).unwrap();
        assert!(displaced);
        assert!(holds(&t, &a) && holds(&t, &c) && !holds(&t, &b));
    }

    #[test]
    fn the_cap_stays_below_the_fd_limit() {
        let soft = fd_limit().unwrap_or(u64::MAX);
        let l = Limits::new(100_000, 32, Duration::from_secs(1));
        assert!((l.connections as u64) <= soft.saturating_sub(32).max(2));
        assert_eq!(Limits::new(1, 0, Duration::from_secs(1)).connections, 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_watchdog_follows_a_moving_deadline_and_displacement() {
        let ms = Duration::from_millis;
        let slot = Slot {
            peer: ip(1),
            state: Mutex::new(SlotState {
                deadline: Instant::now() + ms(200),
                answering: false,
            }),
            displaced: Notify::new(),
        };
        let started = Instant::now();
        let later = async {
            tokio::time::sleep(ms(100)).await;
            slot.set(Instant::now() + ms(200), false);
        };
        tokio::join!(watchdog(&slot), later);
        let took = started.elapsed();
        assert!(took >= ms(300) && took < ms(1000), "{took:?}");
        slot.displaced.notify_one();
        slot.set(Instant::now() + Duration::from_secs(60), false);
        let started = Instant::now();
        watchdog(&slot).await;
        assert!(started.elapsed() < ms(100), "displaced: at once");
    }
}
