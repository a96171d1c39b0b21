//! What a caller may do: the scopes and launch context of its token, turned into a decision
//! per interaction and resource type, and into a test of a resource's content (does it lie in
//! the launch patient's compartment?). Every handler asks here; none reads scopes itself.

use super::scopes::{Context, Interaction, ResourceScope, resource_scopes};
use super::token::AccessClaims;
use crate::fhir::search::filter::compartment_params;
use crate::fhir::search::index::references_of;
use serde_json::Value;
use std::borrow::Borrow;

/// Who is calling and what its token grants.
#[derive(Debug, Clone)]
pub struct Grant {
    pub subject: String,
    pub client_id: Option<String>,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub fhir_user: Option<String>,
    pub scope: String,
    scopes: Vec<ResourceScope>,
    /// Seconds since the epoch.
    pub expires_at: i64,
    /// `--insecure-dev`: no token, everything allowed.
    unrestricted: bool,
}

/// How far an allowed interaction reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every resource of the type.
    All,
    /// Only the members of this patient's compartment.
    Compartment(String),
}

/// Resource types that hold no patient's data but that a patient-facing app needs to make sense
/// of it (who prescribed, which drug, where): `patient/` scopes may read and search them.
const SHARED_TYPES: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
    "Substance",
    "HealthcareService",
    "Endpoint",
];

/// A refusal, said in the 403's OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Grant {
    /// Everything allowed: a server started with `--insecure-dev`.
    pub fn unrestricted() -> Grant {
        Grant {
            subject: "anonymous (insecure-dev)".into(),
            client_id: None,
            patient: None,
            encounter: None,
            fhir_user: None,
            scope: "system/*.cruds".into(),
            scopes: resource_scopes("system/*.cruds"),
            expires_at: i64::MAX,
            unrestricted: true,
        }
    }

    /// Nothing allowed: the caller of a public endpoint (CapabilityStatement) without a token.
    pub fn public() -> Grant {
        Grant {
            subject: "anonymous".into(),
            client_id: None,
            patient: None,
            encounter: None,
            fhir_user: None,
            scope: String::new(),
            scopes: Vec::new(),
            expires_at: i64::MAX,
            unrestricted: false,
        }
    }

    pub fn from_claims(c: AccessClaims) -> Grant {
        Grant {
            scopes: resource_scopes(&c.scope),
            subject: c.sub,
            client_id: c.client_id,
            patient: c.patient,
            encounter: c.encounter,
            fhir_user: c.fhir_user,
            scope: c.scope,
            expires_at: c.exp,
            unrestricted: false,
        }
    }

    /// The name the audit trail records.
    pub fn actor(&self) -> String {
        match (&self.client_id, &self.fhir_user) {
            _ if self.unrestricted => self.subject.clone(),
            (Some(c), Some(u)) => format!("{u} via client {c}"),
            (Some(c), None) => format!("client {c}"),
            (None, Some(u)) => u.clone(),
            (None, None) => self.subject.clone(),
        }
    }

    /// How far `what` on `rtype` reaches, or why it is refused.
    ///
    /// Scopes with a v2 query restriction (`?category=...`) grant nothing yet: honouring them
    /// needs the restriction applied to every read and search, and granting too little is the
    /// safe side. `user/` scopes reach every resource (there are no per-user access lists).
    pub fn reach(&self, what: Interaction, rtype: &str) -> Result<Reach, Denied> {
        if self.unrestricted {
            return Ok(Reach::All);
        }
        let mut compartment = None;
        for s in self.scopes.iter().filter(|s| s.allows(what, rtype)) {
            if s.query.is_some() {
                continue;
            }
            match s.context {
                Context::User | Context::System => return Ok(Reach::All),
                Context::Patient => compartment = compartment.or(self.patient.as_ref()),
            }
        }
        let Some(patient) = compartment else {
            return Err(Denied(format!(
                "the access token's scopes ({}) do not allow {} on {rtype}",
                self.scope,
                verb(what)
            )));
        };
        let reads = matches!(what, Interaction::Read | Interaction::Search);
        if compartment_params(rtype).is_some_and(|p| !p.is_empty()) || rtype == "Patient" {
            Ok(Reach::Compartment(patient.clone()))
        } else if reads && SHARED_TYPES.contains(&rtype) {
            Ok(Reach::All)
        } else {
            Err(Denied(format!(
                "{rtype} resources are not in a patient's compartment: patient scopes do not allow {} on them",
                verb(what)
            )))
        }
    }

    /// `reach`, then whether the resource `rtype/id` lies within it. Its content is only asked
    /// for (and parsed) when the reach is a compartment.
    pub fn check<R: Borrow<Value>>(
        &self,
        what: Interaction,
        rtype: &str,
        id: &str,
        resource: impl FnOnce() -> R,
    ) -> Result<(), Denied> {
        match self.reach(what, rtype)? {
            Reach::All => Ok(()),
            Reach::Compartment(p) if in_compartment(&p, rtype, id, resource().borrow()) => Ok(()),
            Reach::Compartment(p) => Err(Denied(format!(
                "{rtype}/{id} is not in the compartment of Patient/{p}, the only patient this token may reach"
            ))),
        }
    }

    /// The patient whose compartment bounds everything this grant does on `rtype`, if any:
    /// none when some user or system scope covers the type. A conditional write matches its
    /// condition inside that compartment.
    pub fn confinement(&self, rtype: &str) -> Option<String> {
        if self.unrestricted {
            return None;
        }
        let broad = self.scopes.iter().any(|s| {
            s.context != Context::Patient
                && s.query.is_none()
                && s.resource_type.as_deref().is_none_or(|t| t == rtype)
        });
        let in_compartment =
            rtype == "Patient" || compartment_params(rtype).is_some_and(|p| !p.is_empty());
        match (&self.patient, broad) {
            (Some(p), false) if in_compartment => Some(p.clone()),
            _ => None,
        }
    }

    /// Whether `what` reaches every resource of every type (a system search without `_type`
    /// needs it).
    pub fn reaches_everything(&self, what: Interaction) -> bool {
        self.unrestricted
            || self.scopes.iter().any(|s| {
                s.resource_type.is_none()
                    && s.query.is_none()
                    && s.context != Context::Patient
                    && s.allows(what, "*")
            })
    }
}

fn verb(what: Interaction) -> &'static str {
    match what {
        Interaction::Create => "create",
        Interaction::Read => "read",
        Interaction::Update => "update",
        Interaction::Delete => "delete",
        Interaction::Search => "search",
    }
}

/// Whether `resource` is a member of `Patient/{patient}`'s compartment: the patient itself, or
/// a resource that refers to it through one of the compartment's parameters for its type.
pub fn in_compartment(patient: &str, rtype: &str, id: &str, resource: &Value) -> bool {
    if rtype == "Patient" && id == patient {
        return true;
    }
    let Some(params) = compartment_params(rtype) else {
        return false;
    };
    references_of(resource, params).iter().any(|r| {
        r.target_type.as_deref() == Some("Patient") && r.target_id.as_deref() == Some(patient)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grant(scope: &str, patient: Option<&str>) -> Grant {
        Grant::from_claims(AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "u".into(),
            exp: 0,
            iat: 0,
            jti: "j".into(),
            scope: scope.into(),
            client_id: None,
            patient: patient.map(str::to_string),
            encounter: None,
            fhir_user: None,
        })
    }

    #[test]
    fn patient_scopes_reach_the_compartment_and_shared_types() {
        let g = grant("patient/*.rs", Some("p1"));
        assert_eq!(
            g.reach(Interaction::Search, "Observation"),
            Ok(Reach::Compartment("p1".into()))
        );
        assert_eq!(g.reach(Interaction::Read, "Medication"), Ok(Reach::All));
        assert!(g.reach(Interaction::Read, "CodeSystem").is_err());
        assert!(g.reach(Interaction::Create, "Observation").is_err());
        let obs = json!({"resourceType":"Observation","subject":{"reference":"Patient/p1"}});
        assert!(
            g.check(Interaction::Read, "Observation", "o1", || &obs)
                .is_ok()
        );
        let other = json!({"resourceType":"Observation","subject":{"reference":"Patient/p2"}});
        assert!(
            g.check(Interaction::Read, "Observation", "o2", || &other)
                .is_err()
        );
        assert!(
            g.check(
                Interaction::Read,
                "Patient",
                "p1",
                || json!({"resourceType":"Patient"})
            )
            .is_ok()
        );
        assert!(
            g.check(
                Interaction::Read,
                "Patient",
                "p2",
                || json!({"resourceType":"Patient"})
            )
            .is_err()
        );
    }

    #[test]
    fn patient_scopes_without_a_patient_grant_nothing() {
        assert!(
            grant("patient/*.rs", None)
                .reach(Interaction::Read, "Observation")
                .is_err()
        );
    }

    #[test]
    fn system_and_user_scopes_reach_everything_they_name() {
        let g = grant("system/Patient.rs user/Observation.c", None);
        assert_eq!(g.reach(Interaction::Read, "Patient"), Ok(Reach::All));
        assert_eq!(g.reach(Interaction::Create, "Observation"), Ok(Reach::All));
        assert!(g.reach(Interaction::Read, "Observation").is_err());
        assert!(g.reach(Interaction::Delete, "Patient").is_err());
    }

    #[test]
    fn query_restricted_scopes_grant_nothing_yet() {
        let g = grant("system/Observation.rs?category=laboratory", None);
        assert!(g.reach(Interaction::Search, "Observation").is_err());
    }
}
