//! RxNorm from its RRF release: `RXNCONSO.RRF` (pipe-separated: RXCUI, LAT, TS, LUI, STT, SUI,
//! ISPREF, RXAUI, SAUI, SCUI, SDUI, SAB, TTY, CODE, STR, SRL, SUPPRESS, CVF) and, optionally,
//! `RXNREL.RRF` (RXCUI1, RXAUI1, STYPE1, REL, RXCUI2, RXAUI2, STYPE2, RELA, RUI, SRUI, SAB, SL,
//! DIR, RG, SUPPRESS, CVF).
//!
//! Only RxNorm's own atoms (`SAB` RXNORM) are read: a concept is an RXCUI, its display the
//! string of its most specific term type (SCD, SBD, GPCK, BPCK, then the ingredient and dose
//! form types), its other strings designations, its term types a `TTY` property; a concept all
//! of whose atoms are suppressed (`SUPPRESS` not N) is inactive. Relationships read as the
//! UMLS says: a row states that RXCUI2 has the relationship RELA to RXCUI1, so it becomes the
//! property RELA of RXCUI2 with RXCUI1 as its value (`has_ingredient`, `tradename_of`, ...);
//! `isa` links RXCUI2 under RXCUI1 (and `inverse_isa` the other way) for `is-a` filters.

use super::{Concept, Progress, Release, code_property, lines, property};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

pub const URL: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// Term types, most preferred first, for a concept's display.
const TTY_ORDER: [&str; 16] = [
    "SCD", "SBD", "GPCK", "BPCK", "IN", "PIN", "MIN", "BN", "SCDC", "SBDC", "SCDF", "SBDF", "SCDG",
    "SBDG", "DF", "DFG",
];

fn rank(tty: &str) -> usize {
    TTY_ORDER
        .iter()
        .position(|t| *t == tty)
        .unwrap_or(TTY_ORDER.len())
}

fn fields(path: &Path, min: usize, mut each: impl FnMut(&[&str])) -> anyhow::Result<usize> {
    let mut n = 0;
    for (i, line) in lines(path)?.enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('|').collect();
        anyhow::ensure!(
            f.len() >= min,
            "{}: line {} has {} fields, not {min}",
            path.display(),
            i + 1,
            f.len()
        );
        each(&f);
        n += 1;
    }
    Ok(n)
}

pub fn read(
    conso: &Path,
    rel: Option<&Path>,
    version: &str,
    progress: Progress,
) -> anyhow::Result<Release> {
    // RXCUI -> (best rank, concept)
    let mut by_cui: HashMap<String, (usize, Concept, bool)> = HashMap::new();
    let mut order = Vec::new();
    let n = fields(conso, 17, |f| {
        let (cui, sab, tty, text, suppress) = (f[0], f[11], f[12], f[14], f[16]);
        if sab != "RXNORM" {
            return;
        }
        let entry = by_cui.entry(cui.to_string()).or_insert_with(|| {
            order.push(cui.to_string());
            (
                usize::MAX,
                Concept {
                    code: cui.into(),
                    ..Default::default()
                },
                false,
            )
        });
        let r = rank(tty);
        if r < entry.0 {
            entry.0 = r;
            entry.1.display = Some(text.to_string());
        }
        entry.2 |= suppress == "N";
        entry.1.designations.push(json!({"language": "en",
            "use": {"system": URL, "code": tty}, "value": text}));
        if !entry.1.properties.iter().any(|p| p["valueString"] == tty) {
            entry.1.properties.push(property("TTY", tty));
        }
    })?;
    progress(&format!(
        "read {n} atoms ({} concepts) from {}",
        by_cui.len(),
        conso.display()
    ));
    let mut parents = Vec::new();
    if let Some(rel) = rel {
        let n = fields(rel, 11, |f| {
            let (cui1, cui2, rela, sab) = (f[0], f[4], f[7], f[10]);
            if sab != "RXNORM" || cui1.is_empty() || cui2.is_empty() {
                return;
            }
            match rela {
                "isa" => parents.push((cui2.to_string(), cui1.to_string())),
                "inverse_isa" => parents.push((cui1.to_string(), cui2.to_string())),
                _ => {}
            }
            if !rela.is_empty()
                && let Some((_, c, _)) = by_cui.get_mut(cui2)
            {
                c.properties.push(code_property(rela, cui1));
            }
        })?;
        progress(&format!("read {n} relationships ({} isa)", parents.len()));
    }
    let concepts = order
        .into_iter()
        .filter_map(|cui| by_cui.remove(&cui))
        .map(|(_, mut c, shown)| {
            c.inactive = !shown;
            c
        })
        .collect();
    Ok(Release {
        url: URL.into(),
        version: version.into(),
        name: "RxNorm".into(),
        title: "RxNorm".into(),
        property: vec![
            json!({"code": "TTY", "type": "string"}),
            json!({"code": "parent", "type": "code"}),
            json!({"code": "child", "type": "code"}),
        ],
        concepts,
        parents,
    })
}
