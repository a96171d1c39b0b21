//! Nicknames: given names one person goes by interchangeably (William and Bill, Margaret and
//! Peggy), from `capability/mpi/nicknames.csv` (the `nicknames` list, Apache-2.0: see
//! `capability/mpi/nicknames.md`).
//!
//! Only a listed pair is related. Two nicknames of one name are not (the list gives Bill for
//! William and Fred for Frederick, and Bill for Fred too: reading it as groups would make every
//! Robert a Frederick).

use std::collections::HashSet;
use std::sync::OnceLock;

const LIST: &str = include_str!("../../capability/mpi/nicknames.csv");

/// Each listed pair, both ways round, upper case as `Person` keeps names.
fn pairs() -> &'static HashSet<(String, String)> {
    static PAIRS: OnceLock<HashSet<(String, String)>> = OnceLock::new();
    PAIRS.get_or_init(|| {
        let mut out = HashSet::new();
        for line in LIST.lines().skip(1) {
            let mut parts = line.split(',');
            if let (Some(name), Some("has_nickname"), Some(nick)) =
                (parts.next(), parts.next(), parts.next())
            {
                let (a, b) = (name.trim().to_uppercase(), nick.trim().to_uppercase());
                out.insert((b.clone(), a.clone()));
                out.insert((a, b));
            }
        }
        out
    })
}

/// Whether one of the given names `a` and `b` (upper case) is listed as a nickname of the
/// other.
pub fn related(a: &str, b: &str) -> bool {
    pairs().contains(&(a.to_string(), b.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_pairs_are_related_either_way_and_no_others() {
        assert!(related("WILLIAM", "BILL"));
        assert!(related("BILL", "WILLIAM"));
        assert!(related("MARGARET", "PEGGY"));
        assert!(related("ROBERT", "BOB"));
        assert!(!related("WILLIAM", "WILLIAM"));
        assert!(!related("WILLIAM", "MARGARET"));
        assert!(!related("", "BILL"));
        assert!(pairs().len() > 5_000, "{}", pairs().len());
    }
}
