//! Per-field comparisons of two people, each to a level of agreement (best first, `differ`
//! last), or to nothing when either side does not know the field: a missing value is neither
//! for nor against a match.

use super::person::Person;
use serde::{Deserialize, Serialize};
use strsim::jaro_winkler;

/// A field the matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Given,
    Family,
    Birth,
    Gender,
    House,
    Street,
    City,
    Postal,
    State,
    Phone,
    Email,
}

pub const FIELDS: [Field; 11] = [
    Field::Given,
    Field::Family,
    Field::Birth,
    Field::Gender,
    Field::House,
    Field::Street,
    Field::City,
    Field::Postal,
    Field::State,
    Field::Phone,
    Field::Email,
];

/// Jaro-Winkler similarity at or above which two names are `close` (a typo), and `near`.
const CLOSE: f64 = 0.92;
/// Years between two birth dates that make them a parent's and a child's (Sr and Jr).
const GENERATION: i32 = 15;
const NEAR: f64 = 0.80;

impl Field {
    /// The levels of agreement of this field, best first; each has `differ` (birth dates
    /// have one beyond it: a generation apart).
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            Field::Given => &[
                "exact", "swapped", "close", "nickname", "sounds", "near", "differ",
            ],
            Field::Family => &["exact", "swapped", "close", "sounds", "near", "differ"],
            Field::Birth => &[
                "exact",
                "one_edit",
                "day_month_swapped",
                "same_year",
                "differ",
                "generation_apart",
            ],
            Field::Street | Field::City => &["exact", "close", "differ"],
            Field::Postal => &["exact", "one_edit", "differ"],
            Field::Gender | Field::House | Field::State | Field::Phone | Field::Email => {
                &["exact", "differ"]
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::Given => "given",
            Field::Family => "family",
            Field::Birth => "birth",
            Field::Gender => "gender",
            Field::House => "house",
            Field::Street => "street",
            Field::City => "city",
            Field::Postal => "postal",
            Field::State => "state",
            Field::Phone => "phone",
            Field::Email => "email",
        }
    }

    /// The level (an index into `levels`) at which `a` and `b` agree on this field; `None`
    /// when either does not know it.
    pub fn compare(self, a: &Person, b: &Person) -> Option<usize> {
        let level = |name: &str| self.levels().iter().position(|l| *l == name);
        let found = match self {
            Field::Given => name(
                (&a.given, &b.given),
                (&a.given_sound, &b.given_sound),
                swapped(a, b),
                super::nicknames::related,
            )?,
            Field::Family => name(
                (&a.family, &b.family),
                (&a.family_sound, &b.family_sound),
                swapped(a, b),
                |_, _| false,
            )?,
            Field::Birth => birth(&a.birth, &b.birth)?,
            Field::Street | Field::City => {
                let (x, y) = if self == Field::Street {
                    (&a.street, &b.street)
                } else {
                    (&a.city, &b.city)
                };
                both(x, y)?;
                if x == y {
                    "exact"
                } else if jaro_winkler(x, y) >= 0.90 {
                    "close"
                } else {
                    "differ"
                }
            }
            Field::Postal => {
                both(&a.postal, &b.postal)?;
                if a.postal == b.postal {
                    "exact"
                } else if one_edit(&a.postal, &b.postal) {
                    "one_edit"
                } else {
                    "differ"
                }
            }
            Field::Gender => same(&a.gender, &b.gender)?,
            Field::House => same(&a.house, &b.house)?,
            Field::State => same(&a.state, &b.state)?,
            Field::Phone => same(&a.phone, &b.phone)?,
            Field::Email => same(&a.email, &b.email)?,
        };
        level(found)
    }
}

fn both(a: &str, b: &str) -> Option<()> {
    (!a.is_empty() && !b.is_empty()).then_some(())
}

fn same(a: &str, b: &str) -> Option<&'static str> {
    both(a, b)?;
    Some(if a == b { "exact" } else { "differ" })
}

/// Given and family names written the other way round (`SMITH JOHN` for `JOHN SMITH`).
fn swapped(a: &Person, b: &Person) -> bool {
    !a.given.is_empty() && a.given == b.family && a.family == b.given && a.given != a.family
}

/// Two names: `(a, b)`, their sounds `(sa, sb)`, whether the pair has given and family
/// written the other way round, and whether two names are one and its nickname.
fn name(
    (a, b): (&str, &str),
    (sa, sb): (&str, &str),
    swapped: bool,
    nickname: impl Fn(&str, &str) -> bool,
) -> Option<&'static str> {
    both(a, b)?;
    if a == b {
        return Some("exact");
    }
    if swapped {
        return Some("swapped");
    }
    let similarity = jaro_winkler(a, b);
    Some(if similarity >= CLOSE {
        "close"
    } else if nickname(a, b) {
        "nickname"
    } else if !sa.is_empty() && sa == sb {
        "sounds"
    } else if similarity >= NEAR {
        "near"
    } else {
        "differ"
    })
}

/// Whether `a` and `b` differ by exactly one edit: a character changed, added or left out, or
/// two neighbours swapped (a Damerau-Levenshtein distance of 1). Checked in one pass: the
/// general distance allocates a table per call, and every candidate pair asks this twice.
fn one_edit(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a == b || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let start = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let end = a[start..]
        .iter()
        .rev()
        .zip(b[start..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ra, rb) = (&a[start..a.len() - end], &b[start..b.len() - end]);
    match (ra.len(), rb.len()) {
        // one changed, one added or left out
        (1, 1) | (1, 0) | (0, 1) => true,
        // two neighbours swapped
        (2, 2) => ra[0] == rb[1] && ra[1] == rb[0],
        _ => false,
    }
}

/// Two birth dates (`YYYYMMDD`, or a year or year and month alone).
fn birth(a: &str, b: &str) -> Option<&'static str> {
    both(a, b)?;
    if a == b && a.len() == 8 {
        return Some("exact");
    }
    if a.len() < 8 || b.len() < 8 {
        // a partial date agrees on its year at most
        return Some(if a[..4] == b[..4] {
            "same_year"
        } else {
            "differ"
        });
    }
    if one_edit(a, b) {
        return Some("one_edit");
    }
    let (ya, ma, da) = (&a[..4], &a[4..6], &a[6..8]);
    let (yb, mb, db) = (&b[..4], &b[4..6], &b[6..8]);
    let years_apart = match (ya.parse::<i32>(), yb.parse::<i32>()) {
        (Ok(x), Ok(y)) => (x - y).abs(),
        _ => 0,
    };
    Some(if ya == yb && ma == db && da == mb {
        "day_month_swapped"
    } else if ya == yb {
        "same_year"
    } else if years_apart >= GENERATION {
        "generation_apart"
    } else {
        "differ"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn person(given: &str, family: &str, birth: &str) -> Person {
        Person::of(&json!({"name": [{"family": family, "given": [given]}], "birthDate": birth}))
    }

    fn level(field: Field, a: &Person, b: &Person) -> Option<&'static str> {
        field.compare(a, b).map(|l| field.levels()[l])
    }

    #[test]
    fn names_agree_exactly_closely_by_sound_or_swapped() {
        let a = person("Jon", "Smith", "1980-02-14");
        assert_eq!(
            level(Field::Family, &a, &person("Jon", "Smith", "")),
            Some("exact")
        );
        assert_eq!(
            level(Field::Family, &a, &person("Jon", "Smiht", "")),
            Some("close")
        );
        assert_eq!(
            level(Field::Family, &a, &person("Jon", "Smyth", "")),
            Some("sounds")
        );
        assert_eq!(
            level(Field::Given, &a, &person("John", "Smith", "")),
            Some("close")
        );
        assert_eq!(
            level(Field::Family, &a, &person("Jon", "Jones", "")),
            Some("differ")
        );
        assert_eq!(
            level(Field::Given, &a, &person("Smith", "Jon", "")),
            Some("swapped")
        );
        assert_eq!(level(Field::Family, &a, &person("", "", "")), None);
        let katz = person("Al", "Katz", "");
        assert_eq!(
            level(Field::Family, &katz, &person("Al", "Cats", "")),
            Some("sounds")
        );
    }

    #[test]
    fn a_given_name_and_its_nickname_agree_as_nicknames() {
        let a = person("William", "Smith", "1980-02-14");
        let given = |g: &str| level(Field::Given, &a, &person(g, "Smith", ""));
        assert_eq!(given("Bill"), Some("nickname"));
        assert_eq!(given("Willaim"), Some("close"));
        assert_eq!(given("Margaret"), Some("differ"));
        // family names have no nicknames
        let bill = person("Bill", "Bill", "");
        assert_ne!(
            level(Field::Family, &person("Jon", "William", ""), &bill),
            Some("nickname")
        );
    }

    #[test]
    fn one_edit_is_one_change_addition_omission_or_swap() {
        for (a, b) in [
            ("4223", "4224"),
            ("4223", "423"),
            ("423", "4223"),
            ("4223", "4232"),
            ("19651111", "19651211"),
            ("ab", "ba"),
            ("a", ""),
        ] {
            assert!(one_edit(a, b), "{a} {b}");
            assert_eq!(strsim::damerau_levenshtein(a, b), 1, "{a} {b}");
        }
        for (a, b) in [
            ("4223", "4223"),
            ("4223", "4332"),
            ("4223", "42"),
            ("1965", "5691"),
            ("abc", "cab"),
            ("", ""),
        ] {
            assert!(!one_edit(a, b), "{a} {b}");
            assert_ne!(strsim::damerau_levenshtein(a, b), 1, "{a} {b}");
        }
    }

    proptest::proptest! {
        #[test]
        fn one_edit_is_a_damerau_levenshtein_distance_of_one(a in "[0-9a-c]{0,8}", b in "[0-9a-c]{0,8}") {
            proptest::prop_assert_eq!(one_edit(&a, &b), strsim::damerau_levenshtein(&a, &b) == 1);
        }
    }

    #[test]
    fn birth_dates_agree_by_a_digit_a_swap_or_the_year() {
        let a = person("A", "B", "1980-02-14");
        let at = |d: &str| level(Field::Birth, &a, &person("A", "B", d));
        assert_eq!(at("1980-02-14"), Some("exact"));
        assert_eq!(at("1980-02-15"), Some("one_edit"));
        assert_eq!(at("1980-12-04"), Some("same_year"));
        assert_eq!(at("1980"), Some("same_year"));
        assert_eq!(at("1971-02-14"), Some("differ"));
        assert_eq!(at("1955-02-14"), Some("generation_apart"));
        assert_eq!(at(""), None);
        let b = person("A", "B", "1980-03-12");
        assert_eq!(
            level(Field::Birth, &b, &person("A", "B", "1980-12-03")),
            Some("day_month_swapped")
        );
    }

    #[test]
    fn every_field_names_its_levels_best_first_and_differ_last() {
        for f in FIELDS {
            assert!(f.levels().contains(&"differ"), "{f:?}");
            assert_eq!(f.levels()[0], "exact", "{f:?}");
        }
    }
}
