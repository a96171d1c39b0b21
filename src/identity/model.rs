//! The match model as data (`capability/mpi/model.json`): per field and level of agreement,
//! `m` (how often two records of one person agree so) and `u` (how often two records of
//! different people do, by chance), estimated without labels (`estimate`); how many other
//! records of the same person a record has; and the grades' thresholds on the match
//! probability. A pair's score is the sum of each known field's weight `log2(m / u)`
//! (Fellegi-Sunter); its probability adds the prior odds, which fall as the index grows.

use super::compare::{FIELDS, Field};
use super::person::Person;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The model shipped with the server, estimated as `docs/identity.md` says.
pub const SHIPPED: &str = include_str!("../../capability/mpi/model.json");

/// Random pairs of the index that must know a field before its `u` is taken from the index.
pub const LOCAL_PAIRS: f64 = 10_000.0;
/// Pairs at a level before that level's `u` is: rarer levels keep the model's (the sample
/// cannot tell 1 in 100,000 from 1 in 1,000,000).
pub const LOCAL_SEEN: f64 = 30.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    #[serde(default)]
    pub description: String,
    /// How and from what the weights were estimated.
    #[serde(default)]
    pub estimated: BTreeMap<String, serde_json::Value>,
    /// How many other records of the same person a record has, on average, in an index: with
    /// the index's size, the prior odds that two records are one person.
    pub matches_per_record: f64,
    pub grades: Grades,
    /// Agreements that no score makes certain: a pair with one of these is at most probable,
    /// and a person decides.
    #[serde(default)]
    pub never_certain: Vec<Guard>,
    /// Per field, per level (by name): its m and u.
    pub fields: BTreeMap<Field, BTreeMap<String, Level>>,
}

/// A field at a level that keeps a pair from being linked without a person, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    pub field: Field,
    pub level: String,
    pub why: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub m: f64,
    pub u: f64,
}

/// Thresholds on the match probability: at or above `certain` a pair is linked without a
/// person; from `possible` up to it, a person reviews it; below, no link.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grades {
    pub certain: f64,
    pub probable: f64,
    pub possible: f64,
}

/// How sure the matcher is that two records are one person (the `match-grade` extension's
/// codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grade {
    CertainlyNot,
    Possible,
    Probable,
    Certain,
}

impl Grade {
    pub fn code(self) -> &'static str {
        match self {
            Grade::Certain => "certain",
            Grade::Probable => "probable",
            Grade::Possible => "possible",
            Grade::CertainlyNot => "certainly-not",
        }
    }
}

/// One field's part in a score.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    pub field: &'static str,
    pub level: &'static str,
    pub weight: f64,
}

/// A pair's score, probability and grade, with each known field's part.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    pub score: f64,
    pub probability: f64,
    pub grade: Grade,
    /// `fields` for the probabilistic comparison; `identifier` when the pair shares one.
    pub rule: &'static str,
    pub parts: Vec<Part>,
}

impl Model {
    /// The model in `text`, checked: every field with every level, each m and u a probability
    /// above 0, the grades in order. `origin` names the text in the error.
    pub fn parse(text: &str, origin: &str) -> Result<Model, String> {
        let model: Model = serde_json::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        model.check().map_err(|e| format!("{origin}: {e}"))?;
        Ok(model)
    }

    pub fn load(path: &Path) -> Result<Model, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Model::parse(&text, &path.display().to_string())
    }

    pub fn shipped() -> Model {
        Model::parse(SHIPPED, "capability/mpi/model.json").expect("the shipped model is valid")
    }

    fn check(&self) -> Result<(), String> {
        let unit = |x: f64| x > 0.0 && x < 1.0;
        if !(self.matches_per_record > 0.0 && self.matches_per_record < 100.0) {
            return Err(format!(
                "matches_per_record {} is not above 0 (and below 100)",
                self.matches_per_record
            ));
        }
        let g = self.grades;
        if !(unit(g.possible)
            && g.possible <= g.probable
            && g.probable <= g.certain
            && unit(g.certain))
        {
            return Err("grades: need 0 < possible <= probable <= certain < 1".into());
        }
        for g in &self.never_certain {
            if !g.field.levels().contains(&g.level.as_str()) {
                return Err(format!(
                    "never_certain: {} is no level of {}",
                    g.level,
                    g.field.name()
                ));
            }
        }
        for field in FIELDS {
            let levels = self
                .fields
                .get(&field)
                .ok_or_else(|| format!("fields.{} is missing", field.name()))?;
            for name in field.levels() {
                let l = levels
                    .get(*name)
                    .ok_or_else(|| format!("fields.{}.{name} is missing", field.name()))?;
                if !(l.m > 0.0 && l.m <= 1.0 && l.u > 0.0 && l.u <= 1.0) {
                    return Err(format!(
                        "fields.{}.{name}: m and u must be in (0, 1]",
                        field.name()
                    ));
                }
            }
            if let Some(extra) = levels
                .keys()
                .find(|k| !field.levels().contains(&k.as_str()))
            {
                return Err(format!(
                    "fields.{}.{extra} is no level of that field",
                    field.name()
                ));
            }
        }
        Ok(())
    }

    /// This model with `u` taken from `chance` (per field and level, how many random pairs of
    /// the index agree so: `estimate::chance`) where the index tells it: for a field that at
    /// least `LOCAL_PAIRS` pairs know, each level seen at least `LOCAL_SEEN` times. A shipped
    /// model's `u` describe the population it was estimated on; a hospital whose patients
    /// mostly share a city and a state, or a handful of surnames, is another, and agreement
    /// there says less. `m` (how records of one person differ) travels; `u` does not.
    pub fn with_chance(&self, chance: &[Vec<f64>]) -> Model {
        let mut local = self.clone();
        for (i, field) in FIELDS.iter().enumerate() {
            let Some(counts) = chance.get(i) else {
                continue;
            };
            let total: f64 = counts.iter().sum();
            if total < LOCAL_PAIRS {
                continue;
            }
            let levels = local.fields.get_mut(field).expect("checked: every field");
            for (l, name) in field.levels().iter().enumerate() {
                let seen = counts.get(l).copied().unwrap_or_default();
                if let Some(level) = levels.get_mut(*name)
                    && seen >= LOCAL_SEEN
                {
                    level.u = (seen / total).clamp(1e-9, 1.0);
                }
            }
        }
        local
    }

    /// The weight of `field` agreeing at `level`.
    pub fn weight(&self, field: Field, level: usize) -> f64 {
        let name = field.levels()[level];
        let l = self.fields[&field][name];
        (l.m / l.u).log2()
    }

    /// Score the pair (`a`, `b`) in an index of `index_size` records.
    pub fn score(&self, a: &Person, b: &Person, index_size: usize) -> Scored {
        let parts: Vec<Part> = FIELDS
            .iter()
            .filter_map(|&f| {
                let level = f.compare(a, b)?;
                Some(Part {
                    field: f.name(),
                    level: f.levels()[level],
                    weight: self.weight(f, level),
                })
            })
            .collect();
        let score: f64 = parts.iter().map(|p| p.weight).sum();
        let shared = a.identifiers.iter().any(|i| b.identifiers.contains(i));
        let probability = if shared {
            1.0
        } else {
            self.probability(score, index_size)
        };
        let mut grade = self.grade(probability);
        let guarded = self.never_certain.iter().any(|g| {
            parts
                .iter()
                .any(|p| p.field == g.field.name() && p.level == g.level)
        });
        if !shared && guarded && grade == Grade::Certain {
            grade = Grade::Probable;
        }
        Scored {
            score,
            probability,
            grade,
            rule: if shared { "identifier" } else { "fields" },
            parts,
        }
    }

    /// The probability of a match given a pair's score, in an index of `index_size` records:
    /// the prior is one record's expected matches spread over the others.
    pub fn probability(&self, score: f64, index_size: usize) -> f64 {
        let prior = (self.matches_per_record / index_size.saturating_sub(1).max(1) as f64)
            .clamp(1e-12, 0.5);
        let odds = (prior / (1.0 - prior)).log2();
        1.0 / (1.0 + (-(odds + score)).exp2())
    }

    pub fn grade(&self, probability: f64) -> Grade {
        let g = self.grades;
        if probability >= g.certain {
            Grade::Certain
        } else if probability >= g.probable {
            Grade::Probable
        } else if probability >= g.possible {
            Grade::Possible
        } else {
            Grade::CertainlyNot
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_shipped_model_parses_and_a_broken_one_says_where() {
        let m = Model::shipped();
        assert!(m.weight(Field::Family, 0) > 0.0);
        assert!(m.weight(Field::Family, Field::Family.levels().len() - 1) < 0.0);
        let mut v: serde_json::Value = serde_json::from_str(SHIPPED).unwrap();
        v["fields"]["birth"]
            .as_object_mut()
            .unwrap()
            .remove("exact");
        let err = Model::parse(&v.to_string(), "x.json").unwrap_err();
        assert!(
            err.contains("x.json") && err.contains("fields.birth.exact"),
            "{err}"
        );
        v = serde_json::from_str(SHIPPED).unwrap();
        v["grades"]["possible"] = json!(0.999);
        assert!(
            Model::parse(&v.to_string(), "x")
                .unwrap_err()
                .contains("grades")
        );
    }

    impl Model {
        /// Scored in an index of a hundred thousand records.
        fn score_in(&self, a: &Person, b: &Person) -> Scored {
            self.score(a, b, 100_000)
        }
    }

    #[test]
    fn the_same_person_scores_high_and_different_people_low() {
        let m = Model::shipped();
        let p = |g: &str, f: &str, d: &str, zip: &str| {
            Person::of(
                &json!({"name": [{"family": f, "given": [g]}], "birthDate": d,
                               "address": [{"line": ["8 Stanley Street"], "city": "Dapto", "postalCode": zip}]}),
            )
        };
        let a = p("Michaela", "Neumann", "1915-11-11", "4223");
        let typo = m.score_in(&a, &p("Micheala", "Neuman", "1915-11-11", "4223"));
        assert_eq!(typo.grade, Grade::Certain, "{typo:?}");
        let other = m.score_in(&a, &p("Courtney", "Painter", "1916-12-14", "4560"));
        let other_street = Person::of(
            &json!({"name": [{"family": "Painter", "given": ["Courtney"]}],
            "birthDate": "1916-12-14", "address": [{"line": ["12 Pinkerton Circuit"], "city": "Richlands", "postalCode": "4560"}]}),
        );
        assert_eq!(m.score_in(&a, &other_street).grade, Grade::CertainlyNot);
        assert_eq!(other.grade, Grade::CertainlyNot, "{other:?}");
        assert!(
            typo.parts
                .iter()
                .any(|x| x.field == "family" && x.level == "close")
        );
    }
}
