//! SMART scopes, v1 (`patient/Observation.read`, `user/*.write`, `system/*.*`) and v2
//! (`patient/Observation.rs`, `user/*.cruds`, `system/Patient.r?identifier=...`), parsed into
//! what they allow: a context, a resource type (or all), and a set of interactions.

use std::fmt;

/// Whose data a scope is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// One patient's compartment: the `patient` of the launch or token.
    Patient,
    /// What the signed-in user may see.
    User,
    /// A backend service acting on its own behalf.
    System,
}

/// The SMART v2 permissions: create, read, update, delete, search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Interaction {
    fn bit(self) -> u8 {
        match self {
            Interaction::Create => 1,
            Interaction::Read => 2,
            Interaction::Update => 4,
            Interaction::Delete => 8,
            Interaction::Search => 16,
        }
    }

    fn letter(self) -> char {
        match self {
            Interaction::Create => 'c',
            Interaction::Read => 'r',
            Interaction::Update => 'u',
            Interaction::Delete => 'd',
            Interaction::Search => 's',
        }
    }
}

const ORDER: [Interaction; 5] = [
    Interaction::Create,
    Interaction::Read,
    Interaction::Update,
    Interaction::Delete,
    Interaction::Search,
];

/// One resource scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    pub context: Context,
    /// `None` for `*`.
    pub resource_type: Option<String>,
    perms: u8,
    /// A v2 query restriction (`?category=...`), as written after the `?`.
    pub query: Option<String>,
}

impl ResourceScope {
    /// Parse one scope; `None` for what is not a resource scope (`openid`, `launch/patient`,
    /// `offline_access`, ...) or is malformed.
    pub fn parse(scope: &str) -> Option<ResourceScope> {
        let (context, rest) = scope.split_once('/')?;
        let context = match context {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => return None,
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) if !q.is_empty() => (r, Some(q.to_string())),
            Some(_) => return None,
            None => (rest, None),
        };
        let (rtype, perms) = rest.split_once('.')?;
        let resource_type = match rtype {
            "*" => None,
            t if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Some(t.to_string())
            }
            _ => return None,
        };
        let perms = match perms {
            // v1
            "read" => Interaction::Read.bit() | Interaction::Search.bit(),
            "write" => {
                Interaction::Create.bit() | Interaction::Update.bit() | Interaction::Delete.bit()
            }
            "*" => ORDER.iter().map(|i| i.bit()).sum(),
            // v2: letters of "cruds", each at most once and in that order
            v2 => {
                let mut bits = 0u8;
                let mut next = 0;
                for c in v2.chars() {
                    let pos = ORDER[next..].iter().position(|i| i.letter() == c)?;
                    bits |= ORDER[next + pos].bit();
                    next += pos + 1;
                }
                if bits == 0 {
                    return None;
                }
                bits
            }
        };
        if query.is_some()
            && matches!(perms, p if p & !(Interaction::Read.bit() | Interaction::Search.bit()) != 0)
        {
            // A query restricts what is read; a write cannot be "restricted" by a search.
            return None;
        }
        Some(ResourceScope {
            context,
            resource_type,
            perms,
            query,
        })
    }

    pub fn allows(&self, what: Interaction, rtype: &str) -> bool {
        self.perms & what.bit() != 0 && self.resource_type.as_deref().is_none_or(|t| t == rtype)
    }
}

impl fmt::Display for ResourceScope {
    /// The v2 form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let context = match self.context {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        };
        let letters: String = ORDER
            .iter()
            .filter(|i| self.perms & i.bit() != 0)
            .map(|i| i.letter())
            .collect();
        write!(
            f,
            "{context}/{}.{letters}",
            self.resource_type.as_deref().unwrap_or("*")
        )?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

impl ResourceScope {
    /// Whether this scope allows everything `other` asks for.
    pub fn covers(&self, other: &ResourceScope) -> bool {
        self.context == other.context
            && (self.resource_type.is_none() || self.resource_type == other.resource_type)
            && self.perms & other.perms == other.perms
            && (self.query.is_none() || self.query == other.query)
    }
}

/// What to grant of `requested` given what a client is `allowed`: each requested scope that
/// some allowed scope covers (resource scopes), or that is allowed as written (`openid`,
/// `launch/patient`, ...). Nothing requested means everything allowed.
pub fn grant(requested: &str, allowed: &str) -> Vec<String> {
    let allowed_scopes: Vec<&str> = allowed.split_ascii_whitespace().collect();
    if requested.split_ascii_whitespace().next().is_none() {
        return allowed_scopes.iter().map(|s| s.to_string()).collect();
    }
    let allowed_resource: Vec<ResourceScope> = resource_scopes(allowed);
    let mut granted: Vec<String> = Vec::new();
    for s in requested.split_ascii_whitespace() {
        let ok = match ResourceScope::parse(s) {
            Some(r) => allowed_resource.iter().any(|a| a.covers(&r)),
            None => allowed_scopes.contains(&s),
        };
        if ok && !granted.iter().any(|g| g == s) {
            granted.push(s.to_string());
        }
    }
    granted
}

/// The resource scopes of a space-separated scope string.
pub fn resource_scopes(scope: &str) -> Vec<ResourceScope> {
    scope
        .split_ascii_whitespace()
        .filter_map(ResourceScope::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> ResourceScope {
        ResourceScope::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn v1_scopes_map_to_v2_permissions() {
        assert_eq!(
            one("patient/Observation.read").to_string(),
            "patient/Observation.rs"
        );
        assert_eq!(one("user/*.write").to_string(), "user/*.cud");
        assert_eq!(one("system/*.*").to_string(), "system/*.cruds");
    }

    #[test]
    fn v2_letters_must_be_in_order_and_unique() {
        assert_eq!(one("user/Patient.cruds").to_string(), "user/Patient.cruds");
        assert_eq!(
            one("patient/Observation.rs").to_string(),
            "patient/Observation.rs"
        );
        assert_eq!(one("system/Patient.r").to_string(), "system/Patient.r");
        for bad in [
            "user/Patient.sr",
            "user/Patient.rr",
            "user/Patient.x",
            "user/Patient.",
            "foo/Patient.r",
        ] {
            assert_eq!(ResourceScope::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_restrictions_are_kept_on_read_scopes_only() {
        let s = one(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        );
        assert_eq!(
            s.query.as_deref(),
            Some("category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
        );
        assert_eq!(
            ResourceScope::parse("patient/Observation.cu?category=x"),
            None
        );
    }

    #[test]
    fn a_grant_is_what_was_asked_within_what_is_allowed() {
        assert_eq!(
            grant("system/Patient.rs system/Observation.r", "system/*.rs"),
            ["system/Patient.rs", "system/Observation.r"]
        );
        assert_eq!(
            grant("system/Patient.cruds", "system/*.rs"),
            Vec::<String>::new()
        );
        assert_eq!(
            grant("user/Patient.rs", "system/*.rs"),
            Vec::<String>::new()
        );
        assert_eq!(grant("system/*.read", "system/*.rs"), ["system/*.read"]);
        assert_eq!(
            grant("", "system/Patient.rs openid"),
            ["system/Patient.rs", "openid"]
        );
        assert_eq!(grant("openid offline_access", "openid"), ["openid"]);
    }

    #[test]
    fn non_resource_scopes_are_not_resource_scopes() {
        assert!(resource_scopes("openid fhirUser launch/patient offline_access").is_empty());
        let s = resource_scopes("launch patient/*.rs user/Practitioner.r");
        assert_eq!(s.len(), 2);
        assert!(s[0].allows(Interaction::Search, "Condition"));
        assert!(!s[0].allows(Interaction::Update, "Condition"));
        assert!(s[1].allows(Interaction::Read, "Practitioner"));
        assert!(!s[1].allows(Interaction::Search, "Practitioner"));
        assert!(!s[1].allows(Interaction::Read, "Patient"));
    }
}
