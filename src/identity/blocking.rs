//! Blocking: the keys under which a person is filed, so that the candidates for a match are
//! those sharing a key, not the whole index. Several keys, each robust to a different kind of
//! error (a typo in the family name, a wrong birth date, a move), so that a true match shares at
//! least one; each specific enough that a block stays small as the index grows.

use super::person::Person;

/// The most members of one block worth scoring: a key shared by more (a common name in a big
/// city) says too little to be worth the work, and the other keys find the pair.
pub const MAX_BLOCK: usize = 500;

/// The blocking keys of `p`, each prefixed by its kind.
pub fn keys(p: &Person) -> Vec<String> {
    let mut out = Vec::new();
    let year = p.birth_year().unwrap_or("");
    let mut add = |kind: &str, parts: &[&str]| {
        if parts.iter().all(|s| !s.is_empty()) {
            out.push(format!("{kind}:{}", parts.join(":")));
        }
    };
    // each name's sound with the postal code (a wrong birth date, most errors in the other
    // name), the same kind for given and family so that names written the other way round meet.
    // (Each name's sound with the birth year was a key too: on FEBRL 2, 3 and 4 it found 0.1%
    // of the true pairs that no other key did, and every key is a row every write adds.)
    for sound in [&p.given_sound, &p.family_sound] {
        add("pn", &[&p.postal, sound]);
    }
    // both names' sounds, in either order (a wrong birth date)
    let (x, y) = if p.given_sound <= p.family_sound {
        (&p.given_sound, &p.family_sound)
    } else {
        (&p.family_sound, &p.given_sound)
    };
    add("nn", &[x, y]);
    // the whole birth date (errors in both names)
    if p.birth.len() == 8 {
        add("bd", &[&p.birth]);
    }
    // where they live and when they were born (a changed name)
    add("py", &[&p.postal, year]);
    for id in &p.identifiers {
        add("id", &[id]);
    }
    add("ph", &[&p.phone]);
    add("em", &[&p.email]);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_person_is_filed_under_each_key_they_can_give() {
        let p = Person::of(
            &json!({"name": [{"family": "Neumann", "given": ["Michaela"]}],
            "birthDate": "1915-11-11", "address": [{"postalCode": "4223"}],
            "identifier": [{"system": "urn:mrn", "value": "M1"}]}),
        );
        let k = keys(&p);
        for kind in [
            "pn:4223:",
            "nn:",
            "bd:19151111",
            "py:4223:1915",
            "id:urn:mrn|M1",
        ] {
            assert!(k.iter().any(|x| x.starts_with(kind)), "{kind} in {k:?}");
        }
        assert!(keys(&Person::default()).is_empty());
    }
}
