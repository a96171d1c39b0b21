//! The rules that say whether two records are one provider. Deterministic and few, so that a
//! person reading a link or a review sees at once why: providers carry a national identifier
//! (the NPI) far more often than patients do, and a name alone says little (two Dr Smiths).
//!
//! - Practitioner: the same NPI links (`npi`), different NPIs never; a shared identifier of
//!   another system links (`identifier`); then the name and the organization: the same family
//!   name with a compatible given name (the same, an initial of it, a nickname, a typo) and an
//!   organization in common (through their PractitionerRoles, as the registry linked those
//!   organizations) links (`name-and-organization`); a family name with a typo and the rest
//!   agreeing is probable, the same name with no organization known for one of them possible:
//!   both go to review; the same name at different organizations is not linked.
//! - Organization: NPI and identifier as above; the same name (its legal form aside: `Inc`,
//!   `LLC`) at the same city or postal code links (`name-and-address`); the same name with no
//!   address to compare, or a name with a typo at the same place, is probable; the same name at
//!   another place (a branch?) possible.
//! - PractitionerRole: the same practitioner at the same organization (each as the registry
//!   linked them) with no code that disagrees links (`practitioner-and-organization`).

use super::record::Provider;
use crate::identity::Grade;
use crate::identity::nicknames;
use serde::Serialize;
use std::collections::BTreeSet;
use strsim::jaro_winkler;

/// Names at least this similar (Jaro-Winkler) are one with a typo.
const CLOSE: f64 = 0.92;

/// What the registry knows of a record beyond its own fields: the enterprise providers of
/// what it points at (a role's practitioner and organization) or what points at it (the
/// organizations a practitioner's roles name).
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub practitioner: Option<String>,
    pub organization: Option<String>,
    pub organizations: BTreeSet<String>,
}

/// One field as the rules compared it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compared {
    pub field: &'static str,
    pub level: &'static str,
}

/// What the rules say of a pair, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub grade: Grade,
    pub rule: &'static str,
    pub fields: Vec<Compared>,
}

impl Verdict {
    fn new(grade: Grade, rule: &'static str, fields: Vec<Compared>) -> Verdict {
        Verdict {
            grade,
            rule,
            fields,
        }
    }
}

fn field(field: &'static str, level: &'static str) -> Compared {
    Compared { field, level }
}

/// Whether `a` and `b` (records of `rtype`, with what is known around them) are one provider.
pub fn compare(rtype: &str, a: (&Provider, &Evidence), b: (&Provider, &Evidence)) -> Verdict {
    let mut fields = Vec::new();
    // the national identifier decides, either way
    if !a.0.npi.is_empty() && !b.0.npi.is_empty() {
        return if a.0.npi.iter().any(|n| b.0.npi.contains(n)) {
            Verdict::new(Grade::Certain, "npi", vec![field("npi", "exact")])
        } else {
            Verdict::new(Grade::CertainlyNot, "npi", vec![field("npi", "differ")])
        };
    }
    if a.0.identifiers.iter().any(|i| b.0.identifiers.contains(i)) {
        return Verdict::new(
            Grade::Certain,
            "identifier",
            vec![field("identifier", "exact")],
        );
    }
    match rtype {
        "Practitioner" => practitioners(a, b, &mut fields),
        "Organization" => organizations(a.0, b.0, &mut fields),
        _ => roles(a, b, &mut fields),
    }
}

fn practitioners(
    (a, ea): (&Provider, &Evidence),
    (b, eb): (&Provider, &Evidence),
    fields: &mut Vec<Compared>,
) -> Verdict {
    let family = text(&a.family, &b.family);
    let given = given(&a.given, &b.given);
    let organization = if ea.organizations.is_empty() || eb.organizations.is_empty() {
        "unknown"
    } else if ea.organizations.is_disjoint(&eb.organizations) {
        "differ"
    } else {
        "exact"
    };
    fields.extend([
        field("family", family),
        field("given", given),
        field("organization", organization),
    ]);
    let fields = std::mem::take(fields);
    let given_fits = matches!(given, "exact" | "initial" | "nickname" | "close");
    let rule = "name-and-organization";
    match (family, given_fits, organization) {
        ("exact", true, "exact") => Verdict::new(Grade::Certain, rule, fields),
        ("close", true, "exact") => Verdict::new(Grade::Probable, rule, fields),
        ("exact", true, "unknown") if given == "exact" => {
            Verdict::new(Grade::Possible, "name", fields)
        }
        _ => Verdict::new(Grade::CertainlyNot, rule, fields),
    }
}

fn organizations(a: &Provider, b: &Provider, fields: &mut Vec<Compared>) -> Verdict {
    let name = text(&a.name, &b.name);
    let place = if (a.postal.is_empty() || b.postal.is_empty())
        && (a.city.is_empty() || b.city.is_empty())
    {
        "unknown"
    } else if (!a.postal.is_empty() && a.postal == b.postal)
        || (!a.city.is_empty() && a.city == b.city)
    {
        "exact"
    } else {
        "differ"
    };
    fields.extend([field("name", name), field("place", place)]);
    let fields = std::mem::take(fields);
    let rule = "name-and-address";
    match (name, place) {
        ("exact", "exact") => Verdict::new(Grade::Certain, rule, fields),
        ("exact", "unknown") | ("close", "exact") => Verdict::new(Grade::Probable, rule, fields),
        ("exact", "differ") => Verdict::new(Grade::Possible, rule, fields),
        _ => Verdict::new(Grade::CertainlyNot, rule, fields),
    }
}

fn roles(
    (a, ea): (&Provider, &Evidence),
    (b, eb): (&Provider, &Evidence),
    fields: &mut Vec<Compared>,
) -> Verdict {
    let same = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(x), Some(y)) if x == y => "exact",
        (Some(_), Some(_)) => "differ",
        _ => "unknown",
    };
    let practitioner = same(&ea.practitioner, &eb.practitioner);
    let organization = same(&ea.organization, &eb.organization);
    let code = if a.codes.is_empty() || b.codes.is_empty() {
        "unknown"
    } else if a.codes.iter().any(|c| b.codes.contains(c)) {
        "exact"
    } else {
        "differ"
    };
    fields.extend([
        field("practitioner", practitioner),
        field("organization", organization),
        field("code", code),
    ]);
    let grade = if practitioner == "exact" && organization == "exact" && code != "differ" {
        Grade::Certain
    } else {
        Grade::CertainlyNot
    };
    Verdict::new(
        grade,
        "practitioner-and-organization",
        std::mem::take(fields),
    )
}

/// Two normalised names: `exact`, `close` (a typo), `differ` or `unknown`.
fn text(a: &str, b: &str) -> &'static str {
    if a.is_empty() || b.is_empty() {
        "unknown"
    } else if a == b {
        "exact"
    } else if jaro_winkler(a, b) >= CLOSE {
        "close"
    } else {
        "differ"
    }
}

/// Two given names: also `initial` (`J` for `JOHN`) and `nickname` (`BILL` for `WILLIAM`).
fn given(a: &str, b: &str) -> &'static str {
    match text(a, b) {
        "differ" => {
            let initial = |x: &str, y: &str| x.len() == 1 && y.starts_with(x);
            if initial(a, b) || initial(b, a) {
                "initial"
            } else if nicknames::related(a, b) {
                "nickname"
            } else {
                "differ"
            }
        }
        level => level,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn doctor(npi: &str, family: &str, given: &str) -> Provider {
        Provider {
            npi: (!npi.is_empty())
                .then(|| npi.to_string())
                .into_iter()
                .collect(),
            family: family.into(),
            given: given.into(),
            ..Provider::default()
        }
    }

    fn at(orgs: &[&str]) -> Evidence {
        Evidence {
            organizations: orgs.iter().map(|o| o.to_string()).collect(),
            ..Evidence::default()
        }
    }

    fn grade(rtype: &str, a: (&Provider, &Evidence), b: (&Provider, &Evidence)) -> Grade {
        compare(rtype, a, b).grade
    }

    #[test]
    fn the_npi_decides_then_name_and_organization() {
        let none = Evidence::default();
        let p = "Practitioner";
        let (a, b) = (doctor("1", "SMITH", "JOHN"), doctor("1", "SMYTHE", "J"));
        assert_eq!(compare(p, (&a, &none), (&b, &none)).rule, "npi");
        assert_eq!(grade(p, (&a, &none), (&b, &none)), Grade::Certain);
        let c = doctor("2", "SMITH", "JOHN");
        assert_eq!(grade(p, (&a, &none), (&c, &none)), Grade::CertainlyNot);

        let (x, y) = (doctor("", "SMITH", "JOHN"), doctor("", "SMITH", "J"));
        let (h, h2, lab) = (at(&["hosp"]), at(&["hosp", "clinic"]), at(&["lab"]));
        assert_eq!(grade(p, (&x, &h), (&y, &h2)), Grade::Certain);
        assert_eq!(grade(p, (&x, &h), (&y, &lab)), Grade::CertainlyNot);
        // the same name, where one works unknown: a person decides
        let z = doctor("", "SMITH", "JOHN");
        assert_eq!(grade(p, (&x, &h), (&z, &none)), Grade::Possible);
        assert_eq!(grade(p, (&x, &h), (&y, &none)), Grade::CertainlyNot);
        // a typo in the family name at the same place: probable
        let t = doctor("", "SMIHT", "JOHN");
        assert_eq!(grade(p, (&x, &h), (&t, &h)), Grade::Probable);
        // a nickname at the same place
        let n = doctor("", "SMITH", "JACK");
        assert_eq!(grade(p, (&x, &h), (&n, &h)), Grade::Certain);
        // an NPI on one side only does not stop the name from deciding
        assert_eq!(grade(p, (&a, &h), (&x, &h)), Grade::Certain);
    }

    #[test]
    fn organizations_by_name_and_place_and_roles_by_whom_and_where() {
        let none = Evidence::default();
        let org = |name: &str, city: &str| Provider {
            name: name.into(),
            city: city.into(),
            ..Provider::default()
        };
        let o = "Organization";
        let a = org("GENERAL HOSPITAL", "BOSTON");
        assert_eq!(
            grade(o, (&a, &none), (&org("GENERAL HOSPITAL", "BOSTON"), &none)),
            Grade::Certain
        );
        assert_eq!(
            grade(o, (&a, &none), (&org("GENERAL HOSPITAL", ""), &none)),
            Grade::Probable
        );
        assert_eq!(
            grade(o, (&a, &none), (&org("GENERAL HOSPITAL", "SALEM"), &none)),
            Grade::Possible
        );
        assert_eq!(
            grade(o, (&a, &none), (&org("CITY LAB", "BOSTON"), &none)),
            Grade::CertainlyNot
        );

        let r = "PractitionerRole";
        let role = Provider::default();
        let at = |p: &str, o: &str| Evidence {
            practitioner: Some(p.into()),
            organization: Some(o.into()),
            ..Evidence::default()
        };
        assert_eq!(
            grade(r, (&role, &at("p", "o")), (&role, &at("p", "o"))),
            Grade::Certain
        );
        assert_eq!(
            grade(r, (&role, &at("p", "o")), (&role, &at("p", "o2"))),
            Grade::CertainlyNot
        );
    }

    proptest! {
        /// The order of a pair never changes its verdict: a link or a review is about the
        /// pair, whichever of the two was written last.
        #[test]
        fn a_verdict_is_the_same_both_ways(
            fa in "[A-Z]{0,6}", fb in "[A-Z]{0,6}", ga in "[A-Z]{0,5}", gb in "[A-Z]{0,5}",
            na in "[12]?", nb in "[12]?", oa in proptest::collection::btree_set("[ab]", 0..2),
            ob in proptest::collection::btree_set("[ab]", 0..2),
        ) {
            let (a, b) = (doctor(&na, &fa, &ga), doctor(&nb, &fb, &gb));
            let ea = Evidence { organizations: oa, ..Evidence::default() };
            let eb = Evidence { organizations: ob, ..Evidence::default() };
            prop_assert_eq!(
                compare("Practitioner", (&a, &ea), (&b, &eb)).grade,
                compare("Practitioner", (&b, &eb), (&a, &ea)).grade
            );
        }
    }
}
