//! Source of truth per data domain (the `truth` of the routes): ADT from the hospital EMR,
//! results from the LIS, allergies from wherever the team decides. On the ingest path of every
//! source (`ingest::hooks::SourceOfTruth`): a source that does not own a domain may not change
//! what the domain covers in a resource that exists (its elements, or the whole resource), nor
//! delete it; it may create one that does not exist yet when the rule lets others create.
//! A change that leaves the owned elements as they are goes through.

use super::config::{Domain, OnConflict, Routes};
use crate::ingest::Source;
use crate::ingest::hooks::{Refusal, SourceOfTruth};
use crate::store::WriteKind;
use serde_json::Value;
use std::sync::{Arc, RwLock};

/// The rules in force in this process (set again whenever the routes change).
#[derive(Debug, Default)]
pub struct Truth {
    domains: RwLock<Arc<Vec<Domain>>>,
}

/// Elements never compared: the server's own (`meta`, `text`, `id`).
const BOOKKEEPING: [&str; 3] = ["meta", "text", "id"];

impl Truth {
    pub fn set(&self, routes: &Routes) {
        *self.domains.write().expect("not poisoned") = Arc::new(routes.truth.clone());
    }

    fn domains(&self) -> Arc<Vec<Domain>> {
        self.domains.read().expect("not poisoned").clone()
    }
}

impl SourceOfTruth for Truth {
    fn admits(
        &self,
        source: &Source,
        kind: WriteKind,
        rtype: &str,
        new: Option<&Value>,
        old: &mut dyn FnMut() -> Option<Value>,
    ) -> Result<(), Refusal> {
        let domains = self.domains();
        let Some(name) = source.name() else {
            return Ok(());
        };
        // a person reviewed this write and released it: the rule is waived for it
        if source.reviewed_by.is_some() {
            return Ok(());
        }
        let mut before: Option<Option<Value>> = None;
        for d in domains
            .iter()
            .filter(|d| d.resources.iter().any(|r| r == rtype))
        {
            if d.owners.contains(&name) {
                continue;
            }
            let owners = d.owners.join(", ");
            let old = before.get_or_insert_with(&mut *old);
            let Some(old) = old.as_ref() else {
                // nothing there yet
                if d.others_may_create || kind == WriteKind::Delete {
                    continue;
                }
                return Err(d.refusal(format!(
                    "{rtype} belongs to the '{}' domain, whose source of truth is {owners}: {name} may not create one",
                    d.domain
                )));
            };
            let Some(new) = new else {
                return Err(d.refusal(format!(
                    "{rtype} belongs to the '{}' domain, whose source of truth is {owners}: {name} may not delete it",
                    d.domain
                )));
            };
            let changed = changed_elements(d, old, new);
            if !changed.is_empty() {
                return Err(d.refusal(format!(
                    "{rtype}.{} belongs to the '{}' domain, whose source of truth is {owners}: {name} may not change it",
                    changed.join(", "),
                    d.domain
                )));
            }
        }
        Ok(())
    }
}

impl Domain {
    /// A refusal by this domain's rule: refused, or held for review.
    fn refusal(&self, why: String) -> Refusal {
        match self.on_conflict {
            OnConflict::Refuse => Refusal::Refuse(why),
            OnConflict::Hold => Refusal::Hold(why),
        }
    }
}

/// The elements `d` covers that differ between `old` and `new`.
fn changed_elements(d: &Domain, old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut names: Vec<&String> = match d.elements.is_empty() {
        true => o.keys().chain(n.keys()).collect(),
        false => d.elements.iter().collect(),
    };
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|k| !BOOKKEEPING.contains(&k.as_str()))
        .filter(|k| o.get(*k) != n.get(*k))
        .map(|k| k.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Channel;
    use serde_json::json;

    fn truth() -> Truth {
        let t = Truth::default();
        let routes: Routes = serde_json::from_value(json!({"truth": [
            {"domain": "adt", "resources": ["Patient"], "elements": ["name", "birthDate"],
             "owners": ["hl7v2 REG@GH"]},
            {"domain": "allergies", "resources": ["AllergyIntolerance"],
             "owners": ["hl7v2 PHARM@GH"], "others_may_create": false,
             "on_conflict": "hold"}]}))
        .unwrap();
        t.set(&routes);
        t
    }

    fn from(channel: Channel, system: &str) -> Source {
        Source {
            channel,
            system: system.into(),
            reviewed_by: None,
        }
    }

    #[test]
    fn only_owners_change_what_their_domain_covers() {
        let t = truth();
        let lab = from(Channel::Hl7v2, "LAB@GH");
        let reg = from(Channel::Hl7v2, "REG@GH");
        let old = json!({"resourceType": "Patient", "id": "p", "name": [{"family": "Old"}], "gender": "female"});
        let renamed = json!({"resourceType": "Patient", "id": "p", "name": [{"family": "New"}], "gender": "female"});
        let regendered = json!({"resourceType": "Patient", "id": "p", "name": [{"family": "Old"}], "gender": "male",
                                "meta": {"versionId": "2"}});
        let mut some = || Some(old.clone());
        let e = t
            .admits(
                &lab,
                WriteKind::Update,
                "Patient",
                Some(&renamed),
                &mut some,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Patient.name belongs to the 'adt' domain")
                && e.contains("hl7v2 REG@GH")
                && e.contains("hl7v2 LAB@GH"),
            "{e}"
        );
        assert!(
            t.admits(
                &reg,
                WriteKind::Update,
                "Patient",
                Some(&renamed),
                &mut some
            )
            .is_ok()
        );
        // an element the domain does not cover, and bookkeeping, are anyone's
        assert!(
            t.admits(
                &lab,
                WriteKind::Update,
                "Patient",
                Some(&regendered),
                &mut some
            )
            .is_ok()
        );
        assert!(
            t.admits(&lab, WriteKind::Delete, "Patient", None, &mut some)
                .unwrap_err()
                .to_string()
                .contains("may not delete")
        );
        // creating: allowed unless the rule says not
        let mut none = || None;
        assert!(
            t.admits(
                &lab,
                WriteKind::Create,
                "Patient",
                Some(&renamed),
                &mut none
            )
            .is_ok()
        );
        let allergy = json!({"resourceType": "AllergyIntolerance"});
        let e = t
            .admits(
                &lab,
                WriteKind::Create,
                "AllergyIntolerance",
                Some(&allergy),
                &mut none,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("may not create"), "{e}");
        // the allergies' rule holds a feed's change for review, and waives it once released
        let held = t.admits(
            &lab,
            WriteKind::Create,
            "AllergyIntolerance",
            Some(&allergy),
            &mut none,
        );
        assert!(matches!(held, Err(Refusal::Hold(_))), "{held:?}");
        let released = Source {
            reviewed_by: Some("Practitioner/7".into()),
            ..lab.clone()
        };
        assert!(
            t.admits(
                &released,
                WriteKind::Create,
                "AllergyIntolerance",
                Some(&allergy),
                &mut none
            )
            .is_ok()
        );
        // the server's own writers are held by no rule
        assert!(
            t.admits(
                &from(Channel::Mpi, "mpi"),
                WriteKind::Update,
                "Patient",
                Some(&renamed),
                &mut some
            )
            .is_ok()
        );
        // a REST client is named `client ID`
        let e = t
            .admits(
                &from(Channel::Rest, "app"),
                WriteKind::Update,
                "Patient",
                Some(&renamed),
                &mut some,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("client app may not change"), "{e}");
    }
}
