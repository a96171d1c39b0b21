//! Who may connect to the MLLP port, and how much of the server a connection may hold. Anyone
//! who reaches the port can open connections and send unfinished frames, which the server
//! must buffer until they end: unchecked, one peer holds the memory of as many messages as it
//! cares to start. So a peer's address must be allowed (when a list is given), connections are
//! counted per address and in all, and the bytes of unfinished frames come out of one budget
//! for the whole listener, of which one address may hold a quarter. A rate per address, when
//! set, slows a sender down to it.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The bounds, from the settings.
#[derive(Debug, Clone)]
pub struct PeerLimits {
    /// Addresses (networks) that may connect; empty: any.
    pub allow: Vec<IpNet>,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// Bytes of unfinished frames held over all connections.
    pub max_buffered_bytes: usize,
    /// Messages a second one address may send (bursts of twice that); faster senders are
    /// slowed down, not refused: the next message is read when the allowance has room. 0: no
    /// limit.
    pub messages_per_second: u32,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            allow: Vec::new(),
            max_connections: 256,
            max_connections_per_address: 16,
            max_buffered_bytes: 64 * 1024 * 1024,
            messages_per_second: 0,
        }
    }
}

/// Why a peer was turned away: said in the log, the connection closed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    NotAllowed,
    TooManyConnections,
    TooManyFromAddress,
}

#[derive(Default)]
struct Use {
    connections: usize,
    bytes: usize,
}

/// The listener's accounts: connections and bytes held, in all and per address.
pub struct Peers {
    limits: PeerLimits,
    state: Mutex<(Use, HashMap<IpAddr, Use>)>,
    pace: Option<governor::DefaultKeyedRateLimiter<IpAddr>>,
}

impl Peers {
    pub fn new(limits: PeerLimits) -> Arc<Peers> {
        let pace = std::num::NonZeroU32::new(limits.messages_per_second).map(|n| {
            let burst = n.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1));
            governor::RateLimiter::keyed(governor::Quota::per_second(n).allow_burst(burst))
        });
        Arc::new(Peers {
            limits,
            state: Mutex::default(),
            pace,
        })
    }

    /// Let `addr` in, or say why not. The slot gives its share back when dropped.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Result<Slot, Refused> {
        let l = &self.limits;
        if !l.allow.is_empty() && !l.allow.iter().any(|n| n.contains(&addr)) {
            return Err(Refused::NotAllowed);
        }
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (all, by_address) = &mut *guard;
        if all.connections >= l.max_connections {
            return Err(Refused::TooManyConnections);
        }
        let mine = by_address.entry(addr).or_default();
        if mine.connections >= l.max_connections_per_address {
            return Err(Refused::TooManyFromAddress);
        }
        mine.connections += 1;
        all.connections += 1;
        Ok(Slot {
            peers: self.clone(),
            addr,
            held: 0,
        })
    }

    fn address_budget(&self) -> usize {
        self.limits.max_buffered_bytes / 4
    }
}

/// One admitted connection: what it holds of the accounts.
pub struct Slot {
    peers: Arc<Peers>,
    addr: IpAddr,
    held: usize,
}

impl Slot {
    /// Wait until this address may send its next message (at once without a rate).
    pub async fn pace(&self) {
        if let Some(limiter) = &self.peers.pace {
            limiter.until_key_ready(&self.addr).await;
        }
    }

    /// Account for holding `bytes` of unfinished frames now. `false` when the growth would take
    /// this address past its share or the listener past its budget (nothing is taken then).
    pub fn hold(&mut self, bytes: usize) -> bool {
        let mut guard = self.peers.state.lock().unwrap_or_else(|e| e.into_inner());
        let (all, by_address) = &mut *guard;
        let mine = by_address.entry(self.addr).or_default();
        if bytes > self.held {
            let more = bytes - self.held;
            if all.bytes + more > self.peers.limits.max_buffered_bytes
                || mine.bytes + more > self.peers.address_budget()
            {
                return false;
            }
            all.bytes += more;
            mine.bytes += more;
        } else {
            let less = self.held - bytes;
            all.bytes -= less;
            mine.bytes -= less;
        }
        self.held = bytes;
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = self.peers.state.lock().unwrap_or_else(|e| e.into_inner());
        let (all, by_address) = &mut *guard;
        all.connections -= 1;
        all.bytes -= self.held;
        if let Some(mine) = by_address.get_mut(&self.addr) {
            mine.connections -= 1;
            mine.bytes -= self.held;
            if mine.connections == 0 {
                by_address.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(allow: &[&str]) -> Arc<Peers> {
        Peers::new(PeerLimits {
            allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
            max_connections: 3,
            max_connections_per_address: 2,
            max_buffered_bytes: 1000,
            messages_per_second: 0,
        })
    }

    #[test]
    fn connections_are_counted_per_address_and_in_all() {
        let p = peers(&[]);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = p.admit(a).unwrap();
        let _a2 = p.admit(a).unwrap();
        assert_eq!(p.admit(a).err(), Some(Refused::TooManyFromAddress));
        let _b1 = p.admit(b).unwrap();
        assert_eq!(p.admit(b).err(), Some(Refused::TooManyConnections));
        drop(a1);
        assert!(
            p.admit(b).is_ok(),
            "a closed connection gives its place back"
        );
    }

    #[test]
    fn bytes_held_are_bounded_per_address_and_in_all() {
        let p = Peers::new(PeerLimits {
            max_connections: 8,
            max_buffered_bytes: 1000,
            ..PeerLimits::default()
        });
        let slot = |i: u8| p.admit(IpAddr::from([10, 0, 0, i])).unwrap();
        let (mut a, mut a2) = (slot(1), slot(1));
        // an address holds at most a quarter of the budget, over all its connections
        assert!(a.hold(200));
        assert!(!a2.hold(51));
        assert!(a2.hold(50));
        assert!(a.hold(0), "a frame that ended gives its bytes back");
        assert!(a2.hold(250));
        // and all addresses together at most the budget
        let mut others: Vec<Slot> = (2..=4).map(slot).collect();
        assert!(others.iter_mut().all(|s| s.hold(250)));
        let mut last = slot(5);
        assert!(!last.hold(1), "the budget is spent");
        drop(a2);
        assert!(last.hold(250), "a closed connection gave its bytes back");
    }

    #[test]
    fn only_allowed_networks_get_in() {
        let p = peers(&["10.1.0.0/16", "::1/128"]);
        assert!(p.admit("10.1.2.3".parse().unwrap()).is_ok());
        assert!(p.admit("::1".parse().unwrap()).is_ok());
        assert_eq!(
            p.admit("10.2.0.1".parse().unwrap()).err(),
            Some(Refused::NotAllowed)
        );
    }
}
