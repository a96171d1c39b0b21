//! What a caller may do: the scopes and launch context of its token, turned into a decision
//! per interaction and resource type, and into a test of a resource's content (does it lie in
//! the launch patient's compartment?). Every handler asks here; none reads scopes itself.

use super::scopes::{Context, Interaction, ResourceScope, resource_scopes};
use super::token::AccessClaims;
use crate::fhir::search::filter::{Filter, compartment_params, patient_compartment};
use crate::fhir::search::index::references_of;
use crate::fhir::search::matcher::matches_all;
use crate::fhir::search::query::{Clause, QueryError, parse_clause};
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
#[derive(Debug, Clone)]
pub enum Reach {
    /// Every resource of the type.
    All,
    /// Only the resources one of these limits admits (one per scope that allows it).
    Only(Vec<Limit>),
}

/// What one scope lets through: a patient's compartment, a v2 query restriction, or both.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Only members of this patient's compartment.
    pub patient: Option<String>,
    /// Only resources matching every one of these (`?category=laboratory`).
    pub clauses: Vec<Clause>,
}

impl Limit {
    fn admits(&self, rtype: &str, id: &str, resource: &Value) -> bool {
        self.patient
            .as_ref()
            .is_none_or(|p| in_compartment(p, rtype, id, resource))
            && matches_all(resource, &self.clauses)
    }

    /// This limit as a search filter on `rtype` (`None` when it limits nothing).
    pub fn filter(&self, rtype: &str) -> Result<Option<Filter>, Denied> {
        let mut all: Vec<Filter> = self.clauses.iter().cloned().map(Filter::Clause).collect();
        if let Some(p) = &self.patient {
            all.push(patient_compartment(rtype, p).map_err(|e| Denied(e.message))?);
        }
        Ok(match all.len() {
            0 => None,
            1 => all.pop(),
            _ => Some(Filter::And(all)),
        })
    }
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
    // terminology: what codes mean is no patient's
    "CodeSystem",
    "ValueSet",
    "ConceptMap",
];

/// A refusal, said in the 403's OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Grant {
    /// The filter this grant puts on a search of `rtype`, if any: one limit, or any of several
    /// (`None` when it reaches every resource of the type).
    pub fn search_limit(&self, rtype: &str) -> Result<Option<Filter>, Denied> {
        let Reach::Only(limits) = self.reach(Interaction::Search, rtype)? else {
            return Ok(None);
        };
        let mut any = Vec::with_capacity(limits.len());
        for limit in &limits {
            match limit.filter(rtype)? {
                Some(f) => any.push(f),
                None => return Ok(None),
            }
        }
        Ok(if any.len() == 1 {
            any.pop()
        } else {
            Some(Filter::Or(any))
        })
    }

    /// Whether the audit trail may be read: only a system or user scope that names
    /// `AuditEvent` itself (a wildcard `*` is not enough: the trail shows who saw whom), and
    /// never a token confined to a patient.
    pub fn may_read_audit(&self) -> bool {
        if self.unrestricted {
            return true;
        }
        self.patient.is_none()
            && self.scopes.iter().any(|s| {
                s.context != Context::Patient
                    && s.resource_type.as_deref() == Some("AuditEvent")
                    && s.query.is_none()
                    && s.allows(Interaction::Search, "AuditEvent")
                    && s.allows(Interaction::Read, "AuditEvent")
            })
    }

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

    /// The authorization a subscription was created under, kept with it: its scopes and
    /// launch patient, without an expiry (the subscription outlives the token).
    pub fn stored(actor: &str, scope: &str, patient: Option<String>) -> Grant {
        Grant {
            subject: actor.to_string(),
            client_id: None,
            patient,
            encounter: None,
            fhir_user: None,
            scope: scope.to_string(),
            scopes: resource_scopes(scope),
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
    /// Scopes add up: each one that allows `what` on `rtype` admits what its context
    /// (`patient/`: the launch patient's compartment) and its query restriction let through. A
    /// restriction that is not a search of `rtype` admits nothing. `user/` scopes reach every
    /// resource (there are no per-user access lists).
    pub fn reach(&self, what: Interaction, rtype: &str) -> Result<Reach, Denied> {
        if self.unrestricted {
            return Ok(Reach::All);
        }
        let reads = matches!(what, Interaction::Read | Interaction::Search);
        // a Subscription joins its patient's compartment by the server's mark
        // (`SUBSCRIPTION_PATIENT`)
        let in_compartment = rtype == "Patient"
            || rtype == "Subscription"
            || compartment_params(rtype).is_some_and(|p| !p.is_empty());
        let mut limits = Vec::new();
        let mut refusal = None;
        for s in self.scopes.iter().filter(|s| s.allows(what, rtype)) {
            let clauses = match s.query.as_deref().map(|q| restriction(rtype, q)) {
                None => Vec::new(),
                Some(Ok(clauses)) => clauses,
                Some(Err(e)) => {
                    refusal = Some(format!("the scope {s} does not apply to {rtype}: {e}"));
                    continue;
                }
            };
            let patient = match (s.context, &self.patient) {
                (Context::User | Context::System, _) => None,
                (Context::Patient, None) => continue,
                (Context::Patient, Some(p)) if in_compartment => Some(p.clone()),
                (Context::Patient, Some(_)) if reads && SHARED_TYPES.contains(&rtype) => None,
                (Context::Patient, Some(_)) => {
                    refusal = Some(format!(
                        "{rtype} resources are not in a patient's compartment: patient scopes do not allow {} on them",
                        verb(what)
                    ));
                    continue;
                }
            };
            if patient.is_none() && clauses.is_empty() {
                return Ok(Reach::All);
            }
            limits.push(Limit { patient, clauses });
        }
        if limits.is_empty() {
            return Err(Denied(refusal.unwrap_or_else(|| {
                format!(
                    "the access token's scopes ({}) do not allow {} on {rtype}",
                    self.scope,
                    verb(what)
                )
            })));
        }
        Ok(Reach::Only(limits))
    }

    /// `reach`, then whether the resource `rtype/id` lies within it. Its content is only asked
    /// for (and parsed) when the reach is limited.
    pub fn check<R: Borrow<Value>>(
        &self,
        what: Interaction,
        rtype: &str,
        id: &str,
        resource: impl FnOnce() -> R,
    ) -> Result<(), Denied> {
        let Reach::Only(limits) = self.reach(what, rtype)? else {
            return Ok(());
        };
        let resource = resource();
        if limits
            .iter()
            .any(|l| l.admits(rtype, id, resource.borrow()))
        {
            return Ok(());
        }
        let patients: Vec<&str> = limits.iter().filter_map(|l| l.patient.as_deref()).collect();
        Err(Denied(match patients.first() {
            Some(p) if limits.iter().all(|l| l.clauses.is_empty()) => format!(
                "{rtype}/{id} is not in the compartment of Patient/{p}, the only patient this token may reach"
            ),
            _ => format!(
                "{rtype}/{id} is outside what the access token's scopes ({}) allow",
                self.scope
            ),
        }))
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
        // a Subscription joins its patient's compartment by the server's mark
        // (`SUBSCRIPTION_PATIENT`)
        let in_compartment = rtype == "Patient"
            || rtype == "Subscription"
            || compartment_params(rtype).is_some_and(|p| !p.is_empty());
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

/// The clauses of a v2 scope's query restriction, as a search of `rtype`. Only the type's own
/// search parameters may restrict (no chains, `_has` or result parameters).
fn restriction(rtype: &str, query: &str) -> Result<Vec<Clause>, QueryError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| QueryError::new(format!("the query '{query}' does not decode: {e}")))?;
    pairs
        .iter()
        .map(|(name, value)| {
            let clause = parse_clause(rtype, name, value)?.ok_or_else(|| {
                QueryError::new(format!("{name} is not a search parameter of {rtype}"))
            })?;
            // a scope's reach is checked on each resource: a value set's codes are not at hand
            if clause
                .any_of
                .iter()
                .any(|p| matches!(p, crate::fhir::search::query::Predicate::Coded { .. }))
            {
                return Err(QueryError::new(format!(
                    "{name}: a scope's query may not use :in, :not-in, :below or :above"
                )));
            }
            Ok(clause)
        })
        .collect()
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

/// The extension the server puts on a Subscription created under a token confined to one
/// patient, naming that patient: such a Subscription belongs to the patient's compartment (the
/// spec's compartment has no Subscription), so that its app may read, change and end it, and
/// no other patient's app may.
pub const SUBSCRIPTION_PATIENT: &str =
    "http://emrsync.org/fhir/StructureDefinition/subscription-patient";

/// Whether `resource` is a member of `Patient/{patient}`'s compartment: the patient itself, or
/// a resource that refers to it through one of the compartment's parameters for its type (a
/// Subscription: through `SUBSCRIPTION_PATIENT`).
pub fn in_compartment(patient: &str, rtype: &str, id: &str, resource: &Value) -> bool {
    if rtype == "Patient" && id == patient {
        return true;
    }
    if rtype == "Subscription" {
        let wanted = format!("Patient/{patient}");
        return resource["extension"].as_array().is_some_and(|exts| {
            exts.iter().any(|e| {
                e["url"] == SUBSCRIPTION_PATIENT
                    && e["valueReference"]["reference"].as_str() == Some(wanted.as_str())
            })
        });
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
        assert!(matches!(
            g.reach(Interaction::Search, "Observation"),
            Ok(Reach::Only(l)) if l.len() == 1 && l[0].patient.as_deref() == Some("p1")
        ));
        assert!(matches!(
            g.reach(Interaction::Read, "Medication"),
            Ok(Reach::All)
        ));
        // terminology is shared too; other resources outside the compartment are not
        assert!(matches!(
            g.reach(Interaction::Read, "ValueSet"),
            Ok(Reach::All)
        ));
        assert!(g.reach(Interaction::Read, "Questionnaire").is_err());
        // a Subscription is the patient's when the server marked it so
        assert!(matches!(
            g.reach(Interaction::Read, "Subscription"),
            Ok(Reach::Only(l)) if l[0].patient.as_deref() == Some("p1")
        ));
        let mark = |p: &str| {
            json!({"resourceType": "Subscription", "extension": [{"url": SUBSCRIPTION_PATIENT,
                   "valueReference": {"reference": format!("Patient/{p}")}}]})
        };
        assert!(
            g.check(Interaction::Read, "Subscription", "s1", || mark("p1"))
                .is_ok()
        );
        assert!(
            g.check(Interaction::Read, "Subscription", "s2", || mark("p2"))
                .is_err()
        );
        let unmarked = json!({"resourceType": "Subscription"});
        assert!(
            g.check(Interaction::Read, "Subscription", "s3", || &unmarked)
                .is_err()
        );
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
        assert!(matches!(
            g.reach(Interaction::Read, "Patient"),
            Ok(Reach::All)
        ));
        assert!(matches!(
            g.reach(Interaction::Create, "Observation"),
            Ok(Reach::All)
        ));
        assert!(g.reach(Interaction::Read, "Observation").is_err());
        assert!(g.reach(Interaction::Delete, "Patient").is_err());
    }

    #[test]
    fn query_restricted_scopes_admit_what_their_query_matches() {
        let lab = json!({"resourceType":"Observation","subject":{"reference":"Patient/p1"},
            "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}]});
        let vitals = json!({"resourceType":"Observation","subject":{"reference":"Patient/p1"},
            "category":[{"coding":[{"code":"vital-signs"}]}]});
        let lab_p2 = json!({"resourceType":"Observation","subject":{"reference":"Patient/p2"},
            "category":[{"coding":[{"code":"laboratory"}]}]});
        let read = |g: &Grant, r: &Value| g.check(Interaction::Read, "Observation", "o", || r);

        let g = grant(
            "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category%7Claboratory",
            None,
        );
        assert!(read(&g, &lab).is_ok());
        assert!(read(&g, &vitals).is_err());
        assert!(g.reach(Interaction::Read, "Patient").is_err());

        // several restricted scopes add up; a patient scope also keeps to the compartment
        let g = grant(
            "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs",
            Some("p1"),
        );
        assert!(read(&g, &lab).is_ok());
        assert!(read(&g, &vitals).is_ok());
        assert!(read(&g, &lab_p2).is_err());

        // an unrestricted scope on the type reaches everything the restricted one did, and more
        let g = grant(
            "system/Observation.rs?category=laboratory system/Observation.r",
            None,
        );
        assert!(matches!(
            g.reach(Interaction::Read, "Observation"),
            Ok(Reach::All)
        ));

        // a restriction that is no search of the type admits nothing
        let g = grant("system/Observation.rs?no-such-param=1", None);
        let e = g.reach(Interaction::Read, "Observation").unwrap_err();
        assert!(e.0.contains("no-such-param"), "{e}");
    }
}
