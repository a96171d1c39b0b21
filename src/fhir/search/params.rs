//! The search parameters this server supports: the spec's R4 SearchParameters, derived by
//! `scripts/gen-search-parameters.py` into `capability/search-parameters.json`, compiled into
//! the binary with their expressions parsed once.

use crate::fhir::fhirpath::{self, Expr};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

const SEARCH_PARAMETERS_JSON: &str = include_str!("../../../capability/search-parameters.json");

/// The kinds of search parameter the spec defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Token,
    Reference,
    Date,
    Number,
    Quantity,
    Uri,
    Composite,
    Special,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Date => "date",
            ParamType::Number => "number",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Composite => "composite",
            ParamType::Special => "special",
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawParam {
    #[serde(rename = "type")]
    kind: ParamType,
    expression: String,
    url: String,
    #[serde(default)]
    target: Vec<String>,
    #[serde(default)]
    components: Vec<RawComponent>,
}

#[derive(Debug, Deserialize)]
struct RawComponent {
    code: String,
    #[serde(rename = "type")]
    kind: ParamType,
    expression: String,
}

/// One search parameter of one resource type.
#[derive(Debug)]
pub struct SearchParam {
    pub code: String,
    pub kind: ParamType,
    pub url: String,
    pub expression_text: String,
    pub expression: Expr,
    /// Resource types a reference parameter may point at.
    pub target: Vec<String>,
    /// A composite's parts, each evaluated on the items `expression` selects.
    pub components: Vec<Component>,
}

impl SearchParam {
    /// Whether searches by this parameter are offered: all kinds but `special`, and the
    /// composites of two parts that start with a token, and of three (a token and two
    /// numbers: MolecularSequence's coordinates): 71 of the 72 composites here (not
    /// DocumentReference's `relationship`, which starts with a reference).
    pub fn is_supported(&self) -> bool {
        match self.kind {
            ParamType::Special => false,
            ParamType::Composite => match self.components.as_slice() {
                [first, second] => {
                    first.kind == ParamType::Token
                        && matches!(
                            second.kind,
                            ParamType::Token
                                | ParamType::Quantity
                                | ParamType::Number
                                | ParamType::Date
                                | ParamType::String
                        )
                }
                // MolecularSequence's coordinates: a chromosome or sequence id, start, end
                [first, second, third] => {
                    first.kind == ParamType::Token
                        && second.kind == ParamType::Number
                        && third.kind == ParamType::Number
                }
                _ => false,
            },
            _ => true,
        }
    }
}

#[derive(Debug)]
pub struct Component {
    pub code: String,
    pub kind: ParamType,
    pub expression: Expr,
    /// The expression starts at the resource (`%resource.referenceSeq.chromosome`), not at the
    /// item the composite's own expression selected.
    pub from_root: bool,
}

/// Every supported parameter, by resource type and code.
pub struct SearchParams {
    /// Parameters of base Resource (`_id`, `_lastUpdated`, `_tag`, ...): they apply to every type.
    common: BTreeMap<String, SearchParam>,
    by_type: HashMap<String, BTreeMap<String, SearchParam>>,
}

impl SearchParams {
    pub fn get() -> &'static SearchParams {
        static PARAMS: OnceLock<SearchParams> = OnceLock::new();
        PARAMS.get_or_init(|| {
            let mut raw: BTreeMap<String, BTreeMap<String, RawParam>> =
                serde_json::from_str(SEARCH_PARAMETERS_JSON)
                    .expect("capability/search-parameters.json is valid (generated file)");
            add_server_defined(&mut raw);
            SearchParams::from_raw(raw)
        })
    }

    fn from_raw(raw: BTreeMap<String, BTreeMap<String, RawParam>>) -> SearchParams {
        let mut common = BTreeMap::new();
        let mut by_type = HashMap::new();
        for (base, params) in raw {
            let compiled: BTreeMap<String, SearchParam> = params
                .into_iter()
                .map(|(code, p)| {
                    let param = compile(&code, p);
                    (code, param)
                })
                .collect();
            if base == "Resource" || base == "DomainResource" {
                common.extend(compiled);
            } else {
                by_type.insert(base, compiled);
            }
        }
        SearchParams { common, by_type }
    }

    /// The parameter `code` of `rtype` (its own, or one every resource has).
    pub fn find(&self, rtype: &str, code: &str) -> Option<&SearchParam> {
        self.by_type
            .get(rtype)
            .and_then(|p| p.get(code))
            .or_else(|| self.common.get(code))
    }

    /// Every parameter of `rtype`, common ones first.
    pub fn of_type<'s>(&'s self, rtype: &str) -> impl Iterator<Item = &'s SearchParam> + 's {
        let own = self.by_type.get(rtype).into_iter().flat_map(|p| p.values());
        self.common.values().chain(own)
    }
}

/// The parameter `Subscription.patient` this server defines: the patient whose compartment a
/// Subscription joined when a token confined to that patient created it (the server's mark,
/// `auth::access::SUBSCRIPTION_PATIENT`). Indexed like any reference, it lets such a token
/// search its own Subscriptions, and an administrator find a patient's.
pub const SUBSCRIPTION_PATIENT_PARAM: &str = "patient";

fn add_server_defined(raw: &mut BTreeMap<String, BTreeMap<String, RawParam>>) {
    raw.entry("Subscription".into()).or_default().insert(
        SUBSCRIPTION_PATIENT_PARAM.into(),
        RawParam {
            kind: ParamType::Reference,
            expression: "Subscription.extension('http://emrsync.org/fhir/StructureDefinition/subscription-patient').value".into(),
            url: "http://emrsync.org/fhir/SearchParameter/Subscription-patient".into(),
            target: vec!["Patient".into()],
            components: Vec::new(),
        },
    );
}

fn compile(code: &str, p: RawParam) -> SearchParam {
    let parse = |e: &str| {
        fhirpath::parse(e).unwrap_or_else(|err| {
            panic!("search parameter {code}: expression '{e}' does not parse: {err}")
        })
    };
    SearchParam {
        code: code.to_string(),
        kind: p.kind,
        url: p.url,
        expression: parse(&p.expression),
        expression_text: p.expression,
        target: p.target,
        components: p
            .components
            .into_iter()
            .map(|c| {
                // `%resource.x` is `x` of the resource itself
                let (expression, from_root) = match c.expression.strip_prefix("%resource.") {
                    Some(rest) => (parse(rest), true),
                    None => (parse(&c.expression), false),
                };
                Component {
                    expression,
                    from_root,
                    code: c.code,
                    kind: c.kind,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_the_common_and_its_own_parameters() {
        let sp = SearchParams::get();
        let family = sp.find("Patient", "family").unwrap();
        assert_eq!(family.kind, ParamType::String);
        assert_eq!(family.expression_text, "Patient.name.family");
        assert_eq!(
            sp.find("Observation", "_id").unwrap().kind,
            ParamType::Token
        );
        assert_eq!(
            sp.find("Observation", "patient").unwrap().target,
            ["Group", "Patient"]
        );
        let cvq = sp.find("Observation", "code-value-quantity").unwrap();
        assert_eq!(cvq.components.len(), 2);
        assert!(sp.find("Patient", "nonsense").is_none());
        assert!(sp.of_type("Patient").count() > 25);
    }
}
