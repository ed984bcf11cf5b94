//! Which connections are let in, so that no one source can crowd out the
//! others (the doc of [`crate::http`] says the rules): the caps derived from
//! the descriptor limit, the per-source counts, the eviction of the idlest
//! connection when the server is full, and the back-off after a failed
//! `accept`. Nothing here reads a request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Deadline of a TLS handshake, of a request's headers, and of its body.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Most connections open at once, whatever the descriptor limit allows.
pub const MAX_CONNECTIONS: usize = 4096;
/// Descriptors kept free of connections: the listeners, the store and TLS
/// files on reload, the replay directory, the logs, and a margin.
pub const FD_HEADROOM: usize = 64;
/// Most connections from one source address, unless `serve
/// --per-address-connections` says otherwise.
pub const PER_SOURCE: usize = 32;
/// Most connections from one source address once the server is half full.
pub const PER_SOURCE_WHEN_BUSY: usize = 4;
/// The connection caps in force.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub per_source: usize,
}

impl Limits {
    /// Caps from the descriptor limit: the soft limit is first raised to
    /// the hard one (what systemd's `LimitNOFILE` sets), then every
    /// descriptor but [`FD_HEADROOM`] may be a connection, up to
    /// [`MAX_CONNECTIONS`].
    pub fn from_descriptor_limit(per_source: usize) -> Limits {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, hard)) if soft < hard => setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
                .map(|()| hard)
                .unwrap_or(soft),
            Ok((soft, _)) => soft,
            Err(_) => 1024,
        };
        Limits::for_descriptors(soft, per_source)
    }

    /// `descriptors` is an `rlim_t`: u64 on Linux and macOS, i64 on FreeBSD.
    fn for_descriptors(descriptors: libc::rlim_t, per_source: usize) -> Limits {
        let usable = usize::try_from(descriptors)
            .unwrap_or(usize::MAX)
            .saturating_sub(FD_HEADROOM);
        let max_connections = usable.clamp(8, MAX_CONNECTIONS);
        Limits {
            max_connections,
            per_source: per_source.clamp(1, max_connections),
        }
    }
}

/// Where a connection comes from, for the per-source caps: an IPv4
/// address, or the /64 of an IPv6 one (a single host is usually given a
/// whole /64, so counting its addresses one by one would give it 2^64
/// shares).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// One open connection, as the slots see it.
pub(crate) struct Open {
    source: IpAddr,
    activity: Arc<Activity>,
    close: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct Registry {
    open: HashMap<u64, Open>,
    per_source: HashMap<IpAddr, usize>,
}

impl Registry {
    fn remove(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        if let Some(count) = self.per_source.get_mut(&open.source) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&open.source);
            }
        }
        Some(open)
    }
}

/// Open connections, in all and per source.
pub(crate) struct Slots {
    registry: Mutex<Registry>,
    limits: Limits,
}

/// One admitted connection's slot, given back on drop.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
}

/// Why a connection was not admitted as it was.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted,
    /// Admitted in the place of this idle connection, which is told to close.
    Evicted(u64),
}

impl Slots {
    pub(crate) fn new(limits: Limits) -> Arc<Slots> {
        Arc::new(Slots {
            registry: Mutex::default(),
            limits,
        })
    }

    pub(crate) fn admit(
        self: &Arc<Self>,
        id: u64,
        source: IpAddr,
        activity: Arc<Activity>,
        close: Arc<tokio::sync::Notify>,
    ) -> Result<(Slot, Admission), &'static str> {
        let source = source_key(source);
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let total = registry.open.len();
        let limit = if total > self.limits.max_connections / 2 {
            PER_SOURCE_WHEN_BUSY.min(self.limits.per_source)
        } else {
            self.limits.per_source
        };
        if registry.per_source.get(&source).copied().unwrap_or(0) >= limit {
            return Err("per_source");
        }
        let mut admission = Admission::Admitted;
        if total >= self.limits.max_connections {
            let idlest = registry
                .open
                .iter()
                .filter(|(_, open)| open.activity.in_flight.load(Ordering::Relaxed) == 0)
                .min_by_key(|(_, open)| open.activity.last_read_ms.load(Ordering::Relaxed))
                .map(|(id, _)| *id)
                .ok_or("server_full")?;
            if let Some(evicted) = registry.remove(idlest) {
                evicted.close.notify_one();
            }
            admission = Admission::Evicted(idlest);
        }
        *registry.per_source.entry(source).or_insert(0) += 1;
        registry.open.insert(
            id,
            Open {
                source,
                activity,
                close,
            },
        );
        Ok((
            Slot {
                slots: self.clone(),
                id,
            },
            admission,
        ))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.id);
    }
}

/// Waits after a failed `accept`: 10 ms, doubling to 1 s while failures
/// go on, so a server out of descriptors neither spins nor exits.
pub(crate) struct AcceptBackoff(pub(crate) Duration);

impl AcceptBackoff {
    pub(crate) const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);

    pub(crate) async fn failed(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Self::LONGEST);
    }

    pub(crate) fn succeeded(&mut self) {
        self.0 = Self::FIRST;
    }
}

/// The clock every connection's activity is measured on, so that the
/// idlest connection can be found.
fn monotonic_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The last moment a connection read anything, and whether a request is
/// being answered: what the idle timeout and eviction look at.
#[derive(Default)]
pub(crate) struct Activity {
    pub(crate) last_read_ms: AtomicU64,
    pub(crate) in_flight: AtomicUsize,
}

impl Activity {
    pub(crate) fn touch(&self) {
        self.last_read_ms.store(monotonic_ms(), Ordering::Relaxed);
    }

    pub(crate) fn idle_for(&self) -> Option<Duration> {
        (self.in_flight.load(Ordering::Relaxed) == 0).then(|| {
            Duration::from_millis(
                monotonic_ms().saturating_sub(self.last_read_ms.load(Ordering::Relaxed)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_source_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.5".parse().unwrap();
        assert_eq!(source_key(mapped), IpAddr::from([127, 0, 0, 5]));
        assert_eq!(
            source_key(IpAddr::from([10, 1, 2, 3])),
            IpAddr::from([10, 1, 2, 3])
        );
    }

    #[test]
    fn caps_follow_the_descriptor_limit() {
        let l = Limits::for_descriptors(1024, 32);
        assert_eq!(l.max_connections, 1024 - FD_HEADROOM);
        assert_eq!(l.per_source, 32);
        assert_eq!(
            Limits::for_descriptors(1 << 20, 32).max_connections,
            MAX_CONNECTIONS
        );
        let tiny = Limits::for_descriptors(40, 32);
        assert_eq!((tiny.max_connections, tiny.per_source), (8, 8));
    }

    fn open(
        slots: &Arc<Slots>,
        id: u64,
        source: [u8; 4],
    ) -> Result<(Slot, Admission), &'static str> {
        let activity = Arc::new(Activity::default());
        activity.last_read_ms.store(id, Ordering::Relaxed);
        slots.admit(id, IpAddr::from(source), activity, Arc::default())
    }

    #[test]
    fn a_full_server_closes_its_idlest_connection_for_a_new_one() {
        let slots = Slots::new(Limits {
            max_connections: 4,
            per_source: 4,
        });
        let held: Vec<_> = (1..=4)
            .map(|i| open(&slots, i, [127, 0, 0, i as u8]).unwrap().0)
            .collect();
        // Connection 1 is busy: the idlest idle one is 2.
        slots.registry.lock().unwrap().open[&1]
            .activity
            .in_flight
            .store(1, Ordering::Relaxed);
        let (_new, admission) = open(&slots, 5, [127, 0, 0, 9]).unwrap();
        assert_eq!(admission, Admission::Evicted(2));
        assert_eq!(slots.registry.lock().unwrap().open.len(), 4);
        drop(held);
        assert_eq!(
            slots.registry.lock().unwrap().open.len(),
            1,
            "only the new one"
        );
    }

    #[test]
    fn a_full_server_of_busy_connections_refuses() {
        let slots = Slots::new(Limits {
            max_connections: 2,
            per_source: 2,
        });
        let held: Vec<_> = (1..=2)
            .map(|i| open(&slots, i, [127, 0, 0, i as u8]).unwrap().0)
            .collect();
        for open in slots.registry.lock().unwrap().open.values() {
            open.activity.in_flight.store(1, Ordering::Relaxed);
        }
        assert_eq!(open(&slots, 3, [127, 0, 0, 3]).err(), Some("server_full"));
        drop(held);
    }
}
