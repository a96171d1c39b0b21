//! Estimating the model from records without labels, as Fellegi-Sunter linkers such as Splink
//! do. `u` comes from random pairs: nearly all are of different people, so how often they agree
//! is how often different people agree by chance. `m` comes from expectation-maximisation over
//! the pairs each kind of blocking key proposes, one kind at a time, leaving out the fields that
//! kind is built from: pairs that share a birth date agree on it whether or not they are one
//! person, but their names and addresses still tell matches from chance, and chance there looks
//! like random pairs. Each field's `m` is the average over the kinds that leave it out, weighted
//! by the matches each found. How many other records of the same person a record has comes
//! from the kind that found the most matches.

use super::blocking::{self, MAX_BLOCK};
use super::compare::{FIELDS, Field};
use super::model::{Grades, Level, Model};
use super::person::Person;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A pair's comparison vector: per field of `FIELDS`, its level, or `MISSING`.
pub type Vector = [u8; FIELDS.len()];
pub const MISSING: u8 = u8::MAX;

/// Random pairs drawn to estimate `u`.
const RANDOM_PAIRS: usize = 1_000_000;
/// EM rounds at most, and the change in the share of matches below which it stops.
const ROUNDS: usize = 200;
const SETTLED: f64 = 1e-7;
/// Added to every count, so that a level no pair showed keeps a small probability.
const PSEUDO: f64 = 0.5;

/// The fields a kind of blocking key is built from (see `blocking::keys`): pairs it proposes
/// agree on them by construction, so they say nothing there about matching.
fn built_from(kind: &str) -> &'static [Field] {
    match kind {
        "pn" => &[Field::Given, Field::Family, Field::Postal],
        "nn" => &[Field::Given, Field::Family],
        "bd" => &[Field::Birth],
        "py" => &[Field::Postal, Field::Birth],
        "ph" => &[Field::Phone],
        "em" => &[Field::Email],
        _ => &[],
    }
}

pub fn vector(a: &Person, b: &Person) -> Vector {
    let mut v = [MISSING; FIELDS.len()];
    for (i, f) in FIELDS.iter().enumerate() {
        if let Some(l) = f.compare(a, b) {
            v[i] = l as u8;
        }
    }
    v
}

/// The pairs of `people` that share a blocking key (each once, lower index first), per kind
/// of key, skipping blocks larger than `MAX_BLOCK`.
fn pairs_by_kind(people: &[Person]) -> BTreeMap<String, Vec<(u32, u32)>> {
    let mut blocks: HashMap<String, Vec<u32>> = HashMap::new();
    for (i, p) in people.iter().enumerate() {
        for k in blocking::keys(p) {
            blocks.entry(k).or_default().push(i as u32);
        }
    }
    let mut by_kind: BTreeMap<String, HashSet<(u32, u32)>> = BTreeMap::new();
    for (key, members) in blocks.iter().filter(|(_, m)| m.len() <= MAX_BLOCK) {
        let kind = key.split(':').next().unwrap_or_default().to_string();
        let seen = by_kind.entry(kind).or_default();
        for (n, &a) in members.iter().enumerate() {
            for &b in &members[n + 1..] {
                seen.insert((a.min(b), a.max(b)));
            }
        }
    }
    by_kind
        .into_iter()
        .map(|(k, set)| {
            let mut pairs: Vec<(u32, u32)> = set.into_iter().collect();
            pairs.sort_unstable();
            (k, pairs)
        })
        .collect()
}

/// The pairs of `people` that share a blocking key of any kind, each once.
pub fn candidate_pairs(people: &[Person]) -> Vec<(u32, u32)> {
    let mut all: Vec<(u32, u32)> = pairs_by_kind(people).into_values().flatten().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Per field and level, how many of `pairs` random pairs of `people` agree so (those that do
/// not know the field are not counted): how often different people agree by chance, in this
/// population.
pub fn chance(people: &[Person], pairs: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = people.len();
    let mut counts: Vec<Vec<f64>> = FIELDS.iter().map(|f| vec![0.0; f.levels().len()]).collect();
    if n < 2 {
        return counts;
    }
    for _ in 0..pairs {
        let (a, b) = (rng.usize(..n), rng.usize(..n));
        if a == b {
            continue;
        }
        for (i, l) in vector(&people[a], &people[b]).iter().enumerate() {
            if *l != MISSING {
                counts[i][*l as usize] += 1.0;
            }
        }
    }
    counts
}

/// Per field and level, the share of `vectors` at that level among those knowing the field,
/// each count weighted (`weights[i]`, 1 when `None`).
fn shares(vectors: &[Vector], weights: Option<&[f64]>) -> Vec<Vec<f64>> {
    FIELDS
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut counts = vec![PSEUDO; f.levels().len()];
            for (n, v) in vectors.iter().enumerate() {
                if v[i] != MISSING {
                    counts[v[i] as usize] += weights.map_or(1.0, |w| w[n]);
                }
            }
            let total: f64 = counts.iter().sum();
            counts.into_iter().map(|c| c / total).collect()
        })
        .collect()
}

/// Whether any vector knows field `i`.
fn seen(vectors: &[Vector], i: usize) -> bool {
    vectors.iter().any(|v| v[i] != MISSING)
}

/// One kind's EM: `m` for the fields it is not built from, and the matches it expects among
/// its pairs.
struct KindEstimate {
    m: Vec<Vec<f64>>,
    used: Vec<bool>,
    matches: f64,
    rounds: usize,
}

fn em(vectors: &[Vector], u: &[Vec<f64>], skip: &[Field]) -> KindEstimate {
    let used: Vec<bool> = FIELDS
        .iter()
        .enumerate()
        .map(|(i, f)| !skip.contains(f) && seen(vectors, i))
        .collect();
    // start: matches agree at the best level nine times in ten
    let mut m: Vec<Vec<f64>> = FIELDS
        .iter()
        .map(|f| {
            let levels = f.levels().len();
            (0..levels)
                .map(|l| {
                    if l == 0 {
                        0.9
                    } else {
                        0.1 / (levels - 1) as f64
                    }
                })
                .collect()
        })
        .collect();
    let mut share: f64 = 0.1;
    let mut p = vec![0.0; vectors.len()];
    let mut rounds = 0;
    while rounds < ROUNDS && !vectors.is_empty() {
        rounds += 1;
        for (i, v) in vectors.iter().enumerate() {
            let mut log_ratio = (share / (1.0 - share)).ln();
            for (f, &l) in v.iter().enumerate() {
                if l != MISSING && used[f] {
                    log_ratio += (m[f][l as usize] / u[f][l as usize]).ln();
                }
            }
            p[i] = 1.0 / (1.0 + (-log_ratio).exp());
        }
        m = shares(vectors, Some(&p));
        let next = (p.iter().sum::<f64>() / p.len() as f64).clamp(1e-9, 1.0 - 1e-9);
        let settled = (next - share).abs() < SETTLED;
        share = next;
        if settled {
            break;
        }
    }
    KindEstimate {
        m,
        used,
        matches: share * vectors.len() as f64,
        rounds,
    }
}

/// What the estimate saw, for the model's `estimated` note.
#[derive(Debug)]
pub struct Estimate {
    pub model: Model,
    pub records: usize,
    pub candidate_pairs: usize,
    /// EM rounds per kind of blocking key.
    pub rounds: BTreeMap<String, usize>,
    /// Fields no pair knew on both sides, or that every kind is built from: their m and u say
    /// nothing (the caller keeps stated values for them).
    pub unseen: Vec<Field>,
    /// Levels the matches found show fewer than `THIN_MATCHES` times (FEBRL has one
    /// nickname in 5,000 true pairs): their `m` says nothing either (the caller keeps stated
    /// values).
    pub thin: Vec<(Field, &'static str)>,
}

/// Matches at a level below which EM's `m` for it is noise.
const THIN_MATCHES: f64 = 5.0;

/// Estimate a model from `people`, with `seed` for the random pairs; `grades` are kept as given
/// (they are a policy, not a property of the data).
pub fn estimate(people: &[Person], grades: Grades, seed: u64) -> Estimate {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = people.len();
    let random: Vec<Vector> = (0..RANDOM_PAIRS.min(n * n.saturating_sub(1) / 2))
        .filter_map(|_| {
            let (a, b) = (rng.usize(..n), rng.usize(..n));
            (a != b).then(|| vector(&people[a], &people[b]))
        })
        .collect();
    let u = shares(&random, None);
    let by_kind = pairs_by_kind(people);
    let mut rounds = BTreeMap::new();
    // per field and level: the sum of m weighted by each kind's matches, and the weights
    let mut m_sum: Vec<Vec<f64>> = FIELDS.iter().map(|f| vec![0.0; f.levels().len()]).collect();
    let mut m_weight = vec![0.0; FIELDS.len()];
    let mut matches: f64 = 0.0;
    for (kind, pairs) in &by_kind {
        if kind == "id" {
            continue; // a shared identifier decides by itself
        }
        let vectors: Vec<Vector> = pairs
            .iter()
            .map(|&(a, b)| vector(&people[a as usize], &people[b as usize]))
            .collect();
        let k = em(&vectors, &u, built_from(kind));
        rounds.insert(kind.clone(), k.rounds);
        matches = matches.max(k.matches);
        for (i, used) in k.used.iter().enumerate() {
            if *used {
                for (l, m) in k.m[i].iter().enumerate() {
                    m_sum[i][l] += m * k.matches;
                }
                m_weight[i] += k.matches;
            }
        }
    }
    let unseen: Vec<Field> = FIELDS
        .iter()
        .enumerate()
        .filter(|(i, _)| m_weight[*i] <= 0.0 || !seen(&random, *i))
        .map(|(_, f)| *f)
        .collect();
    let thin: Vec<(Field, &'static str)> = FIELDS
        .iter()
        .enumerate()
        .filter(|(i, _)| m_weight[*i] > 0.0)
        .flat_map(|(i, f)| {
            let m_sum = &m_sum[i];
            let weight = m_weight[i];
            f.levels()
                .iter()
                .enumerate()
                .filter(move |(l, _)| m_sum[*l] / weight * matches < THIN_MATCHES)
                .map(move |(_, name)| (*f, *name))
        })
        .collect();
    let round = |x: f64| ((x * 1e7).round() / 1e7).max(1e-7);
    let fields: BTreeMap<Field, BTreeMap<String, Level>> = FIELDS
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let levels = f
                .levels()
                .iter()
                .enumerate()
                .map(|(l, name)| {
                    let m = m_sum[i][l] / m_weight[i].max(f64::MIN_POSITIVE);
                    (
                        name.to_string(),
                        Level {
                            m: round(m),
                            u: round(u[i][l]),
                        },
                    )
                })
                .collect();
            (*f, levels)
        })
        .collect();
    Estimate {
        model: Model {
            description: String::new(),
            estimated: BTreeMap::new(),
            // each match is a pair: two records that each have one other record of theirs
            matches_per_record: ((2.0 * matches / n.max(1) as f64) * 1e4).round() / 1e4,
            grades,
            never_certain: Vec::new(),
            fields,
        },
        records: n,
        candidate_pairs: candidate_pairs(people).len(),
        rounds,
        unseen,
        thin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// People, each written twice with a typo in the second record.
    fn people() -> Vec<Person> {
        let names = [
            ("Michaela", "Neumann"),
            ("Courtney", "Painter"),
            ("Charles", "Green"),
            ("Vanessa", "Parr"),
            ("Mitchell", "Brown"),
            ("Harley", "Mccarthy"),
            ("Joshua", "Hope"),
            ("Isabella", "White"),
        ];
        let mut out = Vec::new();
        for i in 0..400usize {
            let (g, f) = names[i % names.len()];
            let family = format!("{f}{}", ["", "son", "ley", "er", "ford"][i / 8 % 5]);
            let birth = format!("19{:02}-{:02}-{:02}", 20 + i % 70, 1 + i % 12, 1 + i % 28);
            let postal = format!("{}", 2000 + i * 7 % 3000);
            let record = |given: &str, family: &str| {
                Person::of(
                    &json!({"name": [{"family": family, "given": [given]}], "birthDate": birth,
                                    "address": [{"postalCode": postal, "city": "Dapto"}]}),
                )
            };
            out.push(record(g, &family));
            let typo = format!("{}{}", &family[..family.len() - 1], "x");
            out.push(record(g, &typo));
        }
        out
    }

    #[test]
    fn em_learns_that_agreement_is_likelier_among_matches() {
        let people = people();
        let grades = Grades {
            certain: 0.99,
            probable: 0.9,
            possible: 0.5,
        };
        let e = estimate(&people, grades, 7);
        assert!(e.candidate_pairs >= 400, "{}", e.candidate_pairs);
        let model = e.model;
        for f in [Field::Birth, Field::Postal] {
            assert!(model.weight(f, 0) > 3.0, "{f:?}: {}", model.weight(f, 0));
        }
        let given = model.weight(Field::Given, 0);
        assert!(given > 1.0, "{given}");
        // each record has one other record of its person
        let per = model.matches_per_record;
        assert!((0.5..=1.5).contains(&per), "{per}");
    }
}
