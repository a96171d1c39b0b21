//! Failed sign-ins and client-secret checks, counted per account (`user:alice`,
//! `client:payer`) and per address (`addr:192.0.2.7`). Past a few failures a key is locked
//! for a while, doubling with each further failure up to a ceiling: while locked, every
//! attempt is refused before any password is checked, so guessing gets nowhere, however fast
//! the guesses come and however many connections carry them. A success clears an account's
//! count (not its address's: an attacker who knows one password keeps its address's record).
//! The counts live in memory (moka, forgotten an hour after the last failure): a restart
//! forgets them, which costs an attacker a restart's wait, not more guesses than a lock allows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many failures a key may have before it is locked, and for how long.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failures an account may have in a row before it is locked.
    pub account_failures: u32,
    /// Failures one address may have before it is locked (it may be trying many accounts).
    pub address_failures: u32,
    /// The first lock; each further failure doubles it.
    pub first_lock: Duration,
    pub longest_lock: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            account_failures: 5,
            address_failures: 20,
            first_lock: Duration::from_secs(30),
            longest_lock: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    failures: u32,
    locked_until: Option<Instant>,
}

pub struct Throttle {
    settings: ThrottleSettings,
    records: moka::sync::Cache<String, Arc<Mutex<Record>>>,
}

/// A refusal: the key that is locked, and how long until it may try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub key: String,
    pub retry_after: Duration,
}

impl Locked {
    /// Whole seconds, at least one, for `Retry-After`.
    pub fn seconds(&self) -> u64 {
        self.retry_after.as_secs().max(1)
    }
}

impl Throttle {
    pub fn new(settings: ThrottleSettings) -> Throttle {
        Throttle {
            settings,
            records: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    fn record(&self, key: &str) -> Arc<Mutex<Record>> {
        self.records.get_with(key.to_string(), Arc::default)
    }

    /// Whether an attempt on all of `keys` may go ahead now.
    pub fn admit(&self, keys: &[&str]) -> Result<(), Locked> {
        let now = Instant::now();
        for key in keys {
            let Some(r) = self.records.get(*key) else {
                continue;
            };
            let r = r.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(until) = r.locked_until.filter(|u| *u > now) {
                return Err(Locked {
                    key: key.to_string(),
                    retry_after: until - now,
                });
            }
        }
        Ok(())
    }

    /// Count a failed attempt on each of `keys`; the locks it starts or lengthens.
    pub fn failed(&self, keys: &[&str]) -> Vec<Locked> {
        let now = Instant::now();
        let mut locks = Vec::new();
        for key in keys {
            let allowed = match key.starts_with("addr:") {
                true => self.settings.address_failures,
                false => self.settings.account_failures,
            };
            let record = self.record(key);
            let mut r = record.lock().unwrap_or_else(|e| e.into_inner());
            r.failures += 1;
            if r.failures >= allowed {
                let doublings = (r.failures - allowed).min(16);
                let lock = (self.settings.first_lock * 2u32.pow(doublings))
                    .min(self.settings.longest_lock);
                r.locked_until = Some(now + lock);
                locks.push(Locked {
                    key: key.to_string(),
                    retry_after: lock,
                });
            }
        }
        locks
    }

    /// A success on an account: its count starts again.
    pub fn succeeded(&self, account: &str) {
        self.records.invalidate(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(ThrottleSettings {
            account_failures: 3,
            address_failures: 5,
            first_lock: Duration::from_secs(10),
            longest_lock: Duration::from_secs(35),
        })
    }

    #[test]
    fn an_account_is_locked_after_its_failures_and_longer_after_each_more() {
        let t = throttle();
        let keys = ["user:alice", "addr:192.0.2.7"];
        for _ in 0..2 {
            assert!(t.failed(&keys).is_empty());
            assert!(t.admit(&keys).is_ok());
        }
        let locks = t.failed(&keys);
        assert_eq!(locks.len(), 1);
        assert_eq!(locks[0].key, "user:alice");
        assert_eq!(locks[0].retry_after, Duration::from_secs(10));
        let refused = t.admit(&keys).unwrap_err();
        assert_eq!(refused.key, "user:alice");
        assert!(refused.seconds() <= 10 && refused.seconds() >= 9);
        // the next failures double the lock, up to its ceiling; the address locks too
        assert_eq!(t.failed(&keys)[0].retry_after, Duration::from_secs(20));
        let locks = t.failed(&keys);
        assert_eq!(locks[0].retry_after, Duration::from_secs(35));
        assert_eq!(locks[1].key, "addr:192.0.2.7");
        // another account from the same address is refused: the address is locked
        assert_eq!(
            t.admit(&["user:bob", "addr:192.0.2.7"]).unwrap_err().key,
            "addr:192.0.2.7"
        );
        // from another address, another account goes ahead
        assert!(t.admit(&["user:bob", "addr:192.0.2.8"]).is_ok());
    }

    #[test]
    fn a_success_clears_the_account_not_the_address() {
        let t = throttle();
        let keys = ["user:alice", "addr:192.0.2.7"];
        t.failed(&keys);
        t.failed(&keys);
        t.succeeded("user:alice");
        assert!(
            t.failed(&keys).is_empty(),
            "the account counts from 0 again"
        );
        assert!(t.failed(&keys).is_empty());
        // the account's third failure since; the address's fifth in all
        let locked: Vec<String> = t.failed(&keys).into_iter().map(|l| l.key).collect();
        assert_eq!(locked, ["user:alice", "addr:192.0.2.7"]);
    }
}
