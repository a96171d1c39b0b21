//! A search's query string, understood: which resources (filters per type), in which order,
//! which page, and how the Bundle is shaped (`_include`, `_summary`, `_elements`, `_total`).
//! Anything this server does not know is refused by name, so that a client is never handed an
//! unfiltered or unsorted result it did not ask for (unless it asked for lenient handling).

use crate::api::error::ApiError;
use crate::api::paging::CURSOR;
use crate::fhir::Issue;
use crate::fhir::definitions::Definitions;
use crate::fhir::search::filter::{Filter, MAX_TERMS, parse_filter, too_many_terms};
use crate::fhir::search::filter_expr::parse_filter_expression;
use crate::fhir::search::{ParamType, SearchParams};
use crate::fhir::subset::Summary;
use crate::store::search::{Cursor, Include, IncludeKind, Returned, SortKey};
use actix_web::http::StatusCode;

pub const DEFAULT_COUNT: i64 = 20;
pub const MAX_COUNT: i64 = 1000;

/// Bounds on what one search may ask, each refused with a 400 that names it: parameters in all,
/// sort keys, includes. With `filter::MAX_TERMS` over all the filters of all the types searched,
/// they keep every search a statement the database takes, at a cost known before it runs.
const MAX_PARAMS: usize = 100;
const MAX_SORT_KEYS: usize = 8;
const MAX_INCLUDES: usize = 32;

/// Result parameters of the spec this server does not offer.
const NOT_OFFERED: &[&str] = &["_query"];

/// Which types a search covers.
#[derive(Debug, Clone)]
pub enum Types {
    /// `GET [type]` or a compartment: one type.
    One(String),
    /// `GET [base]?_type=A,B`: these.
    Some(Vec<String>),
    /// `GET [base]` without `_type`: every type.
    All,
}

/// `_total`: by default a Bundle carries the total when it costs nothing (the whole result
/// fits in the first page); `accurate` (or `estimate`, answered exactly) counts every match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    WhenFree,
    None,
    Count,
}

/// What the query string asked for.
pub struct SearchRequest {
    /// The filters of each type searched (for `Types::All`, one entry named "Resource").
    pub filters: Vec<(String, Vec<Filter>)>,
    pub all_types: bool,
    pub sort: Vec<SortKey>,
    pub count: i64,
    pub cursor: Option<Cursor>,
    pub total: Total,
    /// `_summary=count`: the total only.
    pub count_only: bool,
    pub summary: Option<Summary>,
    pub elements: Option<Vec<String>>,
    pub includes: Vec<Include>,
    /// Parameters ignored under lenient handling, reported to the client.
    pub ignored: Vec<Issue>,
    /// `_contained=true`: contained resources are searched instead of stored ones, and this
    /// is what is returned of them (`_containedType`).
    pub contained: Option<Returned>,
    /// `_contained=both`: and the stored resources too.
    pub contained_and_stored: bool,
    /// `_containedType`, which counts only with `_contained=true`.
    contained_type: Returned,
}

impl SearchRequest {
    /// Parse `params` for a search of `types`; `extra` filters (a compartment) apply to each.
    pub fn parse(
        types: &Types,
        params: &[(String, String)],
        extra: Option<Filter>,
        lenient: bool,
    ) -> Result<SearchRequest, ApiError> {
        let type_names: Vec<String> = match types {
            Types::One(t) => vec![t.clone()],
            Types::Some(ts) => ts.clone(),
            Types::All => vec!["Resource".into()],
        };
        let mut req = SearchRequest {
            filters: type_names.iter().map(|t| (t.clone(), Vec::new())).collect(),
            all_types: matches!(types, Types::All),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            cursor: None,
            total: Total::WhenFree,
            count_only: false,
            summary: None,
            elements: None,
            includes: Vec::new(),
            ignored: Vec::new(),
            contained: None,
            contained_and_stored: false,
            contained_type: Returned::Container,
        };
        if let Some(f) = extra {
            for (_, filters) in &mut req.filters {
                filters.push(f.clone());
            }
        }
        if params.len() > MAX_PARAMS {
            return Err(ApiError::bad_request(format!(
                "the search has {} parameters; at most {MAX_PARAMS} are accepted",
                params.len()
            )));
        }
        for (name, value) in params {
            req.parameter(&type_names, name, value, lenient)?;
            let terms: usize = req
                .filters
                .iter()
                .flat_map(|(_, f)| f)
                .map(Filter::size)
                .sum();
            if terms > MAX_TERMS {
                return Err(ApiError::bad_request(too_many_terms(name).message));
            }
        }
        if req.sort.len() > MAX_SORT_KEYS || req.includes.len() > MAX_INCLUDES {
            return Err(ApiError::bad_request(format!(
                "the search sorts by {} keys and includes {} kinds of resource; at most \
                 {MAX_SORT_KEYS} and {MAX_INCLUDES} are accepted",
                req.sort.len(),
                req.includes.len()
            )));
        }
        if req.contained.is_some() {
            req.contained = Some(req.contained_type);
            req.check_contained_search(types)?;
        }
        Ok(req)
    }

    /// A search of contained resources is one type's plain parameters (and chains), in the
    /// order of their containers: refuse what it cannot honour rather than ignore it.
    fn check_contained_search(&self, types: &Types) -> Result<(), ApiError> {
        let refuse = |what: &str| {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Issue::error(
                    "not-supported",
                    format!("_contained=true or both: {what} not offered with contained resources"),
                ),
            ))
        };
        if !matches!(types, Types::One(_)) {
            return refuse("searching several types is");
        }
        if !self.sort.is_empty() {
            return refuse("_sort is (they come in their containers' order)");
        }
        if !self.includes.is_empty() {
            return refuse("_include and _revinclude are");
        }
        if self
            .cursor
            .as_ref()
            .is_some_and(|c| c.before || !c.keys.is_empty())
        {
            return refuse("this paging cursor is");
        }
        for f in self.filters.iter().flat_map(|(_, f)| f) {
            if let Some(what) = not_for_contained(f) {
                return refuse(&format!("{what} is"));
            }
        }
        Ok(())
    }

    fn parameter(
        &mut self,
        types: &[String],
        name: &str,
        value: &str,
        lenient: bool,
    ) -> Result<(), ApiError> {
        let bad = |msg: String| Err(ApiError::bad_request(msg));
        match name {
            "_count" => {
                let n: i64 = match value.parse() {
                    Ok(n) if n >= 0 => n,
                    _ => return bad(format!("_count '{value}' is not a number of 0 or more")),
                };
                // more than the server pages at is not an error: the spec lets it send fewer
                self.count = n.min(MAX_COUNT);
            }
            // `_totalMethod` is Aidbox's name for it, which fhirpy's count() sends
            "_total" | "_totalMethod" => {
                self.total = match value {
                    "none" => Total::None,
                    // an estimate would cost the same query here: both are exact
                    "estimate" | "accurate" | "count" => Total::Count,
                    other => {
                        return bad(format!(
                            "_total '{other}' must be none, estimate or accurate"
                        ));
                    }
                }
            }
            "_summary" => match value {
                "true" | "text" | "data" => self.summary = Summary::from_code(value),
                "count" => self.count_only = true,
                "false" => self.summary = None,
                other => {
                    return bad(format!(
                        "_summary '{other}' must be true, text, data, count or false"
                    ));
                }
            },
            "_elements" => self.elements = Some(crate::fhir::subset::element_names(value)),
            "_sort" => {
                for key in value.split(',').filter(|k| !k.is_empty()) {
                    self.sort.push(sort_key(types, key)?);
                }
            }
            "_type" | "_format" | "_pretty" => {}
            CURSOR => {
                self.cursor = Some(Cursor::decode(value).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{CURSOR} '{value}' is not a paging cursor of this server"
                    ))
                })?)
            }
            // `_list=42`: what List/42 holds, which is what points back from it through its
            // `item` parameter; functional lists (`$current-allergies`) are not kept here
            "_list" => {
                if value.starts_with('$') {
                    return self.unsupported(
                        format!(
                            "_list '{value}': functional lists are not offered; name a List by id"
                        ),
                        lenient,
                    );
                }
                if value.is_empty() || value.contains(',') {
                    return bad(format!("_list '{value}' must name one List by its id"));
                }
                self.parameter(types, "_has:List:item:_id", value, lenient)?
            }
            // stored resources (false, the default), the resources they contain (true), or both
            "_contained" => {
                (self.contained, self.contained_and_stored) = match value {
                    "false" => (None, false),
                    "true" => (Some(self.contained_type), false),
                    "both" => (Some(self.contained_type), true),
                    other => {
                        return bad(format!("_contained '{other}' must be true, false or both"));
                    }
                }
            }
            "_containedType" => {
                self.contained_type = match value {
                    "container" => Returned::Container,
                    "contained" => Returned::Contained,
                    other => {
                        return bad(format!(
                            "_containedType '{other}' must be container or contained"
                        ));
                    }
                }
            }
            // `_filter=name co "pet" and ...`: each type's filter, built from the expression
            "_filter" => {
                for (rtype, filters) in &mut self.filters {
                    let f = parse_filter_expression(rtype, value)
                        .map_err(|e| ApiError::bad_request(e.message))?;
                    filters.push(f);
                }
            }
            n if n == "_include"
                || n == "_revinclude"
                || n.starts_with("_include:")
                || n.starts_with("_revinclude:") =>
            {
                self.include(types, n, value)?
            }
            n => {
                let code = n.split([':', '.']).next().unwrap_or(n);
                if NOT_OFFERED.contains(&code) {
                    return self
                        .unsupported(format!("search parameter '{n}' is not supported"), lenient);
                }
                for i in 0..self.filters.len() {
                    let rtype = self.filters[i].0.clone();
                    match parse_filter(&rtype, n, value) {
                        Ok(Some(f)) => self.filters[i].1.push(f),
                        Ok(None) => {
                            let msg = if self.all_types {
                                format!(
                                    "'{n}' is not a search parameter of every resource type; name the types with _type"
                                )
                            } else {
                                format!(
                                    "'{n}' is not a search parameter of {rtype} (see the CapabilityStatement)"
                                )
                            };
                            return self.unsupported(msg, lenient);
                        }
                        Err(e) => return bad(e.message),
                    }
                }
            }
        }
        Ok(())
    }

    fn unsupported(&mut self, msg: String, lenient: bool) -> Result<(), ApiError> {
        if lenient {
            self.ignored.push(Issue::warning(
                "not-supported",
                format!("{msg} (ignored: lenient handling)"),
            ));
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Issue::error("not-supported", msg),
            ))
        }
    }

    /// `_include[:iterate]=Source:param[:Target]`, `Source:*` or `*`; the same for `_revinclude`.
    fn include(&mut self, types: &[String], name: &str, value: &str) -> Result<(), ApiError> {
        let (base, modifier) = name.split_once(':').unwrap_or((name, ""));
        let iterate = match modifier {
            "" => false,
            "iterate" | "recurse" => true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "{name}: unknown modifier ':{other}' (supported: iterate)"
                )));
            }
        };
        let kind = if base == "_include" {
            IncludeKind::Include
        } else {
            IncludeKind::RevInclude
        };
        if value == "*" {
            if kind == IncludeKind::RevInclude {
                return Err(ApiError::bad_request(
                    "_revinclude=*: name the source type, as in Provenance:*",
                ));
            }
            for t in types {
                self.includes.push(Include {
                    kind,
                    source_type: t.clone(),
                    param: None,
                    target_type: None,
                    iterate,
                });
            }
            return Ok(());
        }
        let parts: Vec<&str> = value.split(':').collect();
        let (source, code, target) = match parts.as_slice() {
            [s, c] => (*s, *c, None),
            [s, c, t] => (*s, *c, Some(*t)),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "{name}={value}: write SourceType:parameter[:TargetType]"
                )));
            }
        };
        if !Definitions::get().is_resource_type(source) {
            return Err(ApiError::bad_request(format!(
                "{name}={value}: '{source}' is not a resource type"
            )));
        }
        let param = if code == "*" {
            None
        } else {
            match SearchParams::get().find(source, code) {
                Some(p) if p.kind == ParamType::Reference => {
                    if let Some(t) = target
                        && !p.target.iter().any(|x| x == t)
                    {
                        return Err(ApiError::bad_request(format!(
                            "{name}={value}: {source}.{code} never points at a {t}"
                        )));
                    }
                    Some(p.code.clone())
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "{name}={value}: '{code}' is not a reference parameter of {source}"
                    )));
                }
            }
        };
        self.includes.push(Include {
            kind,
            source_type: source.to_string(),
            param,
            target_type: target.map(str::to_string),
            iterate,
        });
        Ok(())
    }
}

/// One `_sort` key (`-date` descending), the same parameter in every type searched.
fn sort_key(types: &[String], key: &str) -> Result<SortKey, ApiError> {
    let (code, descending) = match key.strip_prefix('-') {
        Some(c) => (c, true),
        None => (key, false),
    };
    let mut found: Option<SortKey> = None;
    for t in types {
        let param = SearchParams::get().find(t, code).ok_or_else(|| {
            ApiError::bad_request(format!("_sort: '{code}' is not a search parameter of {t}"))
        })?;
        let k = SortKey::of(param, descending).map_err(ApiError::bad_request)?;
        if let Some(prev) = &found
            && prev.kind != k.kind
        {
            return Err(ApiError::bad_request(format!(
                "_sort: '{code}' is not of one kind across the types searched"
            )));
        }
        found = Some(k);
    }
    found.ok_or_else(|| ApiError::bad_request("_sort needs a type to search"))
}

/// What of `filter` a search of contained resources cannot answer, named for the client:
/// `_id` and `_lastUpdated` are the container's, `_has` and full text are kept for stored
/// resources only.
fn not_for_contained(filter: &Filter) -> Option<String> {
    match filter {
        Filter::Clause(c) if crate::fhir::search::index::is_stored_elsewhere(&c.param.code) => {
            Some(format!("'{}'", c.param.code))
        }
        Filter::Clause(_) | Filter::Chain { .. } | Filter::Compartment { .. } => None,
        Filter::Has { .. } => Some("_has".into()),
        Filter::Text(_) => Some("_text and _content".into()),
        Filter::Not(inner) => not_for_contained(inner),
        Filter::And(parts) | Filter::Or(parts) => parts.iter().find_map(not_for_contained),
    }
}

#[cfg(test)]
mod properties {
    //! Whatever a query string holds, it is parsed or refused, never a panic, and what is
    //! parsed stays within the bounds that keep it one statement the database takes.
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        let part = prop::sample::select(vec![
            "code",
            "subject",
            "patient",
            "date",
            "value-quantity",
            "combo-code-value-quantity",
            "name",
            "_id",
            "_lastUpdated",
            "identifier",
            "focus",
            "target",
            "organization",
            "_has:Observation:patient:code",
            "_has:Provenance:target",
            "_count",
            "_sort",
            "_include",
            "_revinclude",
            "_elements",
            "_summary",
            "_total",
            "_type",
            "x",
        ]);
        let modifier = prop::sample::select(vec![
            "",
            ":not",
            ":exact",
            ":contains",
            ":missing",
            ":Patient",
            ":text",
            ":iterate",
            ":x",
        ]);
        (prop::collection::vec(part, 1..5), modifier)
            .prop_map(|(parts, m)| format!("{}{m}", parts.join(".")))
    }

    fn value() -> impl Strategy<Value = String> {
        let one = prop::sample::select(vec![
            "x",
            "ge2020-01-01",
            "lt5|http://unitsofmeasure.org|mg",
            "c$gt1",
            "Patient/p",
            "http://loinc.org|1-8",
            "-date",
            "Observation:subject",
            "*",
            "true",
            "-1",
            "2000",
            "\\,",
            "",
            "a$b$c",
            "gt",
            "2020-13-45",
        ]);
        (prop::collection::vec(one, 1..8), 1usize..40)
            .prop_map(|(vs, times)| vec![vs.join(","); times].join(","))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_query_is_parsed_within_bounds_or_refused(
            params in prop::collection::vec((name(), value()), 0..120),
            types in prop::sample::select(vec!["Observation", "Patient", "Provenance", "*"]),
        ) {
            let types = match types {
                "*" => Types::All,
                t => Types::One(t.to_string()),
            };
            if let Ok(req) = SearchRequest::parse(&types, &params, None, false) {
                let terms: usize = req.filters.iter().flat_map(|(_, f)| f).map(Filter::size).sum();
                prop_assert!(terms <= MAX_TERMS);
                prop_assert!(params.len() <= MAX_PARAMS);
                prop_assert!(req.sort.len() <= MAX_SORT_KEYS);
                prop_assert!((0..=MAX_COUNT).contains(&req.count));
            }
        }
    }
}
