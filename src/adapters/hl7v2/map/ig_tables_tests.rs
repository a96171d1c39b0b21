//! The v2-to-FHIR IG's segment tables as the coverage test reads them: rows, the fields they
//! map, the top-level elements each names (`Key`), and when a row applies (`Condition`).

use std::collections::BTreeSet;
use std::path::Path;

/// One row of an IG segment table.
pub(super) struct Row {
    pub(super) field: String,
    pub(super) name: String,
    pub(super) datatype: String,
    pub(super) attribute: String,
    pub(super) vocabulary: String,
    pub(super) assignment: String,
    pub(super) condition: String,
}

/// A field of the segment and the IG's rows for it.
pub(super) struct Field {
    pub(super) id: String,
    pub(super) number: usize,
    pub(super) name: String,
    pub(super) datatype: String,
    pub(super) vocabulary: String,
    pub(super) targets: BTreeSet<Key>,
    /// Per row with a target, its condition.
    pub(super) conditions: Vec<Condition>,
}

/// When an IG row applies.
pub(super) enum Condition {
    Always,
    /// When these fields of the segment are empty (`IF PID-25 NOT VALUED`).
    Empty(BTreeSet<usize>),
    /// Any other condition (on another segment, on a component's value...).
    Other,
}

impl Field {
    /// The fields to empty while this one is measured: none when a row of it applies always,
    /// else those its rows' conditions need empty (the IG's `IF TQ1-7 AND TQ1-8 NOT VALUED`
    /// beside rows for when one of them is valued).
    pub(super) fn unless(&self) -> BTreeSet<usize> {
        if self
            .conditions
            .iter()
            .any(|c| matches!(c, Condition::Always))
        {
            return BTreeSet::new();
        }
        let mut all = BTreeSet::new();
        for c in &self.conditions {
            if let Condition::Empty(fields) = c {
                all.extend(fields);
            }
        }
        all
    }
}

/// A top-level element of the resource the IG names as a field's target.
#[derive(PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) enum Key {
    Element(String),
    Extension(Option<String>),
    /// A resource the element refers to (`payor[1](Organization)`): what the message makes of
    /// that type, whole.
    Referred(String),
}

pub(super) fn read_rows(path: &Path) -> Vec<Row> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cell = |r: &csv::StringRecord, i: usize| r.get(i).unwrap_or("").trim().to_string();
    reader
        .records()
        .skip(2)
        .map(|r| r.expect("a CSV record"))
        .filter(|r| cell(r, 1).contains('-'))
        .map(|r| Row {
            field: cell(&r, 1),
            name: cell(&r, 2),
            datatype: cell(&r, 3),
            attribute: cell(&r, 9),
            vocabulary: cell(&r, 15),
            // the assignment, else a URL the sheet slipped into a later column
            assignment: [16, 17, 18]
                .into_iter()
                .map(|i| cell(&r, i).trim_matches('"').to_string())
                .enumerate()
                .find(|(n, a)| !a.is_empty() && (*n == 0 || a.starts_with("http")))
                .map(|(_, a)| a)
                .unwrap_or_default(),
            condition: cell(&r, 6),
        })
        .collect()
}

/// The element (or extension, by the url the IG assigns it among the rows of the same field:
/// each field numbers its extensions afresh) that `attribute` starts at.
pub(super) fn key_of(attribute: &str, rows: &[&Row]) -> Option<Vec<Key>> {
    if attribute.is_empty() || attribute.starts_with('$') {
        return None;
    }
    let first = attribute.split('.').next()?;
    // `identifier[2]`, `location(Location)`: the element's name
    let name = first.split(['[', '(']).next()?.to_string();
    if name == "extension" || name == "modifierExtension" {
        let url = rows
            .iter()
            .find(|r| {
                let a = r.attribute.as_str();
                (a == format!("{first}.url") || a == format!("{first}.uri"))
                    && !r.assignment.is_empty()
            })
            .map(|r| r.assignment.clone());
        return Some(vec![Key::Extension(url)]);
    }
    if !name.chars().next()?.is_ascii_lowercase() {
        return None;
    }
    let mut keys = vec![Key::Element(name)];
    // `requester(PractitionerRole.practitioner(Practitioner))`: the innermost type named
    if let Some(inner) = attribute
        .rsplit('(')
        .next()
        .filter(|_| attribute.contains('('))
    {
        // `policyHolder([1]Organization.identifier)`: past the index
        let rtype: String = inner
            .trim_start_matches(|c: char| c == '[' || c == ']' || c.is_ascii_digit())
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        if rtype.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
            keys.push(Key::Referred(rtype));
        }
    }
    Some(keys)
}

pub(super) fn fields(rows: &[Row]) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    for row in rows {
        let Some(number) = row
            .field
            .rsplit('-')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if out.last().is_none_or(|f| f.id != row.field) {
            out.push(Field {
                id: row.field.clone(),
                number,
                name: row.name.clone(),
                datatype: row.datatype.clone(),
                vocabulary: String::new(),
                targets: BTreeSet::new(),
                conditions: Vec::new(),
            });
        }
        let field = out.last_mut().expect("pushed above");
        if field.vocabulary.is_empty() {
            field.vocabulary = row.vocabulary.clone();
        }
        let same: Vec<&Row> = rows.iter().filter(|r| r.field == row.field).collect();
        let Some(keys) = key_of(&row.attribute, &same) else {
            continue;
        };
        field.targets.extend(keys);
        let segment = row.field.split('-').next().unwrap_or_default();
        field.conditions.push(match row.condition.as_str() {
            "" => Condition::Always,
            c => not_valued(c, segment).map_or(Condition::Other, Condition::Empty),
        });
    }
    out
}

/// The fields of `segment` a condition `IF PID-25 NOT VALUED` (or `IS NOT VALUED`) needs
/// empty; `None` for any other condition (one on another segment's field included) or none.
pub(super) fn not_valued(condition: &str, segment: &str) -> Option<BTreeSet<usize>> {
    // one field (`IF PID-25 NOT VALUED`) or two (`IF TQ1-7 AND TQ1-8 NOT VALUED`)
    let re = regex::Regex::new(
        r"^IF ([A-Z0-9]{3})-(\d+)(?: AND ([A-Z0-9]{3})-(\d+))? (IS )?NOT VALUED\s*$",
    )
    .expect("a regex");
    let found = re.captures(condition)?;
    let mut fields = BTreeSet::new();
    for (seg, n) in [(1, 2), (3, 4)] {
        let Some(seg) = found.get(seg) else { continue };
        if seg.as_str() != segment {
            return None;
        }
        fields.insert(found.get(n)?.as_str().parse().ok()?);
    }
    Some(fields)
}
