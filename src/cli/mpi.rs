//! `emrsync mpi`: the review queue and decisions (on a server's database), estimating the
//! match model from Patients without labels, and measuring a model against Patients whose true
//! identity is known (a benchmark such as FEBRL; see `docs/identity.md` and
//! `scripts/mpi-febrl.sh`).

use crate::identity::estimate::{candidate_pairs, estimate};
use crate::identity::model::Model;
use crate::identity::{Grade, Person};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct MpiArgs {
    #[command(subcommand)]
    pub command: MpiCommand,
}

#[derive(Subcommand)]
pub enum MpiCommand {
    /// List the review queue: pairs the matcher is unsure about (or decided ones), newest
    /// first, with both records' names, birth dates and the fields compared.
    Reviews {
        #[command(flatten)]
        store: crate::config::StoreArgs,
        /// open, same or different
        #[arg(long, default_value = "open")]
        status: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Decide a review: the two records are the same person, or different people. The
    /// decision is kept, and the matcher never overrules it.
    Decide {
        #[command(flatten)]
        store: crate::config::StoreArgs,
        /// The review's id (as `mpi reviews` lists it).
        id: String,
        /// same or different
        decision: String,
        /// Who decides (kept in the link history).
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Withdraw the decision on a review: the pair is open again, and both records are linked
    /// as the matcher sees them now.
    Undo {
        #[command(flatten)]
        store: crate::config::StoreArgs,
        /// The review's id.
        id: String,
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Merge two persons: every record of FROM moves to INTO (each a person id, a golden
    /// record's id, or one of its records' Patient id). Kept; `mpi unmerge` undoes it.
    Merge {
        #[command(flatten)]
        store: crate::config::StoreArgs,
        from: String,
        into: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Undo a merge: the records it moved that are still where it put them go back.
    Unmerge {
        #[command(flatten)]
        store: crate::config::StoreArgs,
        /// The merge's id (as `mpi merge` printed it).
        id: String,
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Estimate m, u and the prior with EM from Patients (ndjson), and print the model (or
    /// write it with --out). No labels are read.
    Estimate {
        /// Files of Patient resources, one JSON per line.
        #[arg(long = "patients", required = true)]
        patients: Vec<PathBuf>,
        /// An identifier system to leave out before matching (a benchmark's truth).
        #[arg(long)]
        ignore_system: Option<String>,
        /// The model whose grades to keep (default: the shipped one).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Match Patients (ndjson) with a model and print precision, recall and F1 of the
    /// auto-links and of the review band, against the true identity each Patient carries
    /// under --truth-system (which the matcher does not see).
    Evaluate {
        #[arg(long = "patients", required = true)]
        patients: Vec<PathBuf>,
        #[arg(long)]
        truth_system: String,
        #[arg(long)]
        model: Option<PathBuf>,
        /// Print this many true pairs that blocking did not propose, with their keys.
        #[arg(long, default_value_t = 0)]
        show_missed: usize,
        /// Print this many pairs of the review band, with each field's part in the score.
        #[arg(long, default_value_t = 0)]
        show_review: usize,
    },
}

pub fn run(args: MpiArgs) -> anyhow::Result<()> {
    match args.command {
        MpiCommand::Reviews {
            store,
            status,
            limit,
        } => {
            let store = open(store)?;
            let list = store.read(|conn| crate::identity::links::reviews(conn, &status, limit))?;
            for r in list {
                let names = store.read(|conn| {
                    let mut out = Vec::new();
                    for id in [&r.patient_id, &r.other_id] {
                        let v = crate::store::versions::current(conn, "Patient", id)?;
                        let p = v.map(|v| v.json()).unwrap_or(Value::Null);
                        let name = &p["name"][0];
                        out.push(format!(
                            "Patient/{id} {} {} {}",
                            name["given"][0].as_str().unwrap_or("?"),
                            name["family"].as_str().unwrap_or("?"),
                            p["birthDate"].as_str().unwrap_or("?")
                        ));
                    }
                    Ok(out)
                })?;
                println!("{} {} p={:.4} {}", r.id, r.status, r.probability, r.grade);
                for n in names {
                    println!("  {n}");
                }
                println!("  {}", r.detail);
                use crate::identity::links::{Side, persons_may_be_one};
                let sides = store.read(|conn| {
                    Ok((Side::of(conn, &r.patient_id)?, Side::of(conn, &r.other_id)?))
                })?;
                if let Some((from, into)) = persons_may_be_one(&sides.0, &sides.1) {
                    println!(
                        "  two persons ({} and {} records): deciding same moves one record; if they are one, `emrsync mpi merge {} {}`",
                        into.records, from.records, from.record, into.record
                    );
                }
            }
        }
        MpiCommand::Decide {
            store,
            id,
            decision,
            by,
        } => {
            let same = match decision.as_str() {
                "same" => true,
                "different" => false,
                other => anyhow::bail!("decision '{other}': one of same, different"),
            };
            let (store, mpi) = open_mpi(store)?;
            let who = format!("operator {by}");
            match store.write_rows(|conn| mpi.decide(conn, &id, same, &who))? {
                Some(r) => println!("{} decided: {}", r.id, r.status),
                None => anyhow::bail!("no review {id}"),
            }
        }
        MpiCommand::Undo { store, id, by } => {
            let (store, mpi) = open_mpi(store)?;
            let who = format!("operator {by}");
            let r = store.write_rows(|conn| mpi.undo(conn, &id, &who))?;
            let r = r.map_err(refused)?;
            println!("{} {}: the decision is withdrawn", r.id, r.status);
        }
        MpiCommand::Merge {
            store,
            from,
            into,
            reason,
            by,
        } => {
            let (store, mpi) = open_mpi(store)?;
            let who = format!("operator {by}");
            let m = store.write_rows(|conn| mpi.merge(conn, (&from, &into), &reason, &who))?;
            let m = m.map_err(refused)?;
            println!(
                "merge {}: person {} into {} ({})",
                m.id,
                m.from_person,
                m.into_person,
                m.moved().join(", ")
            );
        }
        MpiCommand::Unmerge { store, id, by } => {
            let (store, mpi) = open_mpi(store)?;
            let who = format!("operator {by}");
            let u = store.write_rows(|conn| mpi.unmerge(conn, &id, &who))?;
            let u = u.map_err(refused)?;
            println!(
                "merge {} undone: back to person {}: {}; left where they are: {}",
                u.merge.id,
                u.merge.from_person,
                u.restored.join(", "),
                u.left.join(", ")
            );
        }
        MpiCommand::Estimate {
            patients,
            ignore_system,
            model,
            out,
            seed,
        } => {
            let base = load_model(model.as_ref())?;
            let (people, _) = read(&patients, ignore_system.as_deref())?;
            let e = estimate(&people, base.grades, seed);
            let mut model = e.model;
            model.description = base.description;
            model.never_certain = base.never_certain;
            // a field the records never give (FEBRL has no sex, phone or email) keeps the
            // stated values of the base model
            for field in &e.unseen {
                model.fields.insert(*field, base.fields[field].clone());
            }
            // a level the matches hardly show (nicknames in FEBRL) keeps the base model's m
            let thin: Vec<(crate::identity::compare::Field, &str)> = e
                .thin
                .iter()
                .filter(|(f, _)| !e.unseen.contains(f))
                .copied()
                .collect();
            for (field, level) in &thin {
                if let (Some(stated), Some(l)) = (
                    base.fields[field].get(*level),
                    model
                        .fields
                        .get_mut(field)
                        .and_then(|levels| levels.get_mut(*level)),
                ) {
                    l.m = stated.m;
                }
            }
            model.estimated = [
                (
                    "method",
                    json!("EM over blocked candidate pairs; u started from random pairs"),
                ),
                ("records", json!(e.records)),
                ("candidate_pairs", json!(e.candidate_pairs)),
                ("rounds", json!(e.rounds)),
                ("seed", json!(seed)),
                (
                    "not_estimated",
                    json!(e.unseen.iter().map(|f| f.name()).collect::<Vec<_>>()),
                ),
                (
                    "m_stated",
                    json!(
                        thin.iter()
                            .map(|(f, l)| format!("{}.{l}", f.name()))
                            .collect::<Vec<_>>()
                    ),
                ),
                (
                    "from",
                    json!(
                        patients
                            .iter()
                            .map(|p| p.file_name().map(|f| f.to_string_lossy().to_string()))
                            .collect::<Vec<_>>()
                    ),
                ),
                (
                    "date",
                    json!(chrono::Utc::now().format("%Y-%m-%d").to_string()),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let text = serde_json::to_string_pretty(&model)? + "\n";
            match out {
                Some(path) => std::fs::write(&path, text)?,
                None => print!("{text}"),
            }
            eprintln!(
                "{} records, {} candidate pairs, EM rounds per key {:?}, {} matches per record",
                e.records, e.candidate_pairs, e.rounds, model.matches_per_record
            );
        }
        MpiCommand::Evaluate {
            patients,
            truth_system,
            model,
            show_missed,
            show_review,
        } => {
            let model = load_model(model.as_ref())?;
            let (people, truth) = read(&patients, Some(&truth_system))?;
            // as the server scores: with u from a random sample of its index, once big enough
            let model = match people.len() as i64 >= crate::identity::chance::MIN_RECORDS {
                true => {
                    let sample = crate::identity::chance::sample_of(&people, 1);
                    crate::identity::chance::localised(&model, &sample, people.len() as u64)
                }
                false => model,
            };
            evaluate(&model, &people, &truth);
            review(&model, &people, &truth, show_review);
            missed(&people, &truth, show_missed);
        }
    }
    Ok(())
}

fn open(store: crate::config::StoreArgs) -> anyhow::Result<crate::store::Store> {
    let settings = crate::config::Settings::new("127.0.0.1:0", store);
    crate::store::Store::open(&settings.store_settings()?)
}

/// The server's database and its MPI, as `serve` would configure it.
fn open_mpi(
    store: crate::config::StoreArgs,
) -> anyhow::Result<(crate::store::Store, std::sync::Arc<crate::identity::Mpi>)> {
    let settings = crate::config::Settings::new("127.0.0.1:0", store);
    let store = crate::store::Store::open(&settings.store_settings()?)?;
    let mpi = crate::startup::mpi(&store, &settings)?;
    Ok((store, mpi))
}

fn refused(r: crate::identity::decisions::Refusal) -> anyhow::Error {
    use crate::identity::decisions::Refusal;
    match r {
        Refusal::Missing(text) | Refusal::Conflict(text) => anyhow::Error::msg(text),
    }
}

fn load_model(path: Option<&PathBuf>) -> anyhow::Result<Model> {
    Ok(match path {
        Some(p) => Model::load(p).map_err(anyhow::Error::msg)?,
        None => Model::shipped(),
    })
}

/// The Patients of `files`, as people, without the identifiers of `hidden`, and each one's
/// value under `hidden` (its true identity, for `evaluate`).
fn read(files: &[PathBuf], hidden: Option<&str>) -> anyhow::Result<(Vec<Person>, Vec<String>)> {
    let mut people = Vec::new();
    let mut truth = Vec::new();
    for file in files {
        let reader = std::io::BufReader::new(std::fs::File::open(file)?);
        for line in reader.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let mut patient: Value = serde_json::from_str(&line)?;
            let mut known = String::new();
            if let (Some(system), Some(ids)) = (hidden, patient["identifier"].as_array_mut()) {
                ids.retain(|i| {
                    let hide = i["system"] == system;
                    if hide {
                        known = i["value"].as_str().unwrap_or("").to_string();
                    }
                    !hide
                });
            }
            people.push(Person::of(&patient));
            truth.push(known);
        }
    }
    Ok((people, truth))
}

#[derive(Default)]
struct Counts {
    true_positive: usize,
    false_positive: usize,
}

impl Counts {
    fn line(&self, name: &str, true_pairs: usize) -> String {
        let found = self.true_positive + self.false_positive;
        let precision = self.true_positive as f64 / found.max(1) as f64;
        let recall = self.true_positive as f64 / true_pairs.max(1) as f64;
        let f1 = 2.0 * precision * recall / (precision + recall).max(f64::EPSILON);
        format!(
            "{name:<26} {found:>8} pairs  precision {precision:.4}  recall {recall:.4}  F1 {f1:.4}"
        )
    }
}

fn evaluate(model: &Model, people: &[Person], truth: &[String]) {
    let started = Instant::now();
    let pairs = candidate_pairs(people);
    let scored: Vec<(u32, u32, Grade)> = pairs
        .iter()
        .map(|&(a, b)| {
            (
                a,
                b,
                model
                    .score(&people[a as usize], &people[b as usize], people.len())
                    .grade,
            )
        })
        .collect();
    let elapsed = started.elapsed();
    // the matcher alone: the same pairs without the guards that send some to a person
    let mut bare = model.clone();
    bare.never_certain.clear();
    let mut bare_auto = Counts::default();
    let mut groups: HashMap<&str, usize> = HashMap::new();
    for t in truth.iter().filter(|t| !t.is_empty()) {
        *groups.entry(t).or_default() += 1;
    }
    let true_pairs: usize = groups.values().map(|k| k * (k - 1) / 2).sum();
    let same = |a: u32, b: u32| {
        let (x, y) = (&truth[a as usize], &truth[b as usize]);
        !x.is_empty() && x == y
    };
    let (mut auto, mut review, mut either) =
        (Counts::default(), Counts::default(), Counts::default());
    let mut blocked_true = 0;
    for &(a, b, grade) in &scored {
        let hit = same(a, b);
        blocked_true += usize::from(hit);
        let tally = |c: &mut Counts| {
            if hit {
                c.true_positive += 1
            } else {
                c.false_positive += 1
            }
        };
        if bare
            .score(&people[a as usize], &people[b as usize], people.len())
            .grade
            == Grade::Certain
        {
            tally(&mut bare_auto);
        }
        match grade {
            Grade::Certain => {
                tally(&mut auto);
                tally(&mut either);
            }
            Grade::Probable | Grade::Possible => {
                tally(&mut review);
                tally(&mut either);
            }
            Grade::CertainlyNot => {}
        }
    }
    println!(
        "{} records, {} true pairs, {} candidate pairs (blocking finds {} of the true pairs: {:.4})",
        people.len(),
        true_pairs,
        pairs.len(),
        blocked_true,
        blocked_true as f64 / true_pairs.max(1) as f64
    );
    println!("{}", auto.line("auto-link (certain)", true_pairs));
    println!("{}", review.line("review band", true_pairs));
    println!("{}", either.line("auto-link or review", true_pairs));
    println!("{}", bare_auto.line("auto-link without guards", true_pairs));
    println!(
        "blocking and scoring: {:.2} s, {:.0} records/s",
        elapsed.as_secs_f64(),
        people.len() as f64 / elapsed.as_secs_f64().max(1e-9)
    );
}

/// Up to `n` true pairs that share no blocking key, each with both records' keys.
fn missed(people: &[Person], truth: &[String], n: usize) {
    if n == 0 {
        return;
    }
    let proposed: std::collections::HashSet<(u32, u32)> =
        candidate_pairs(people).into_iter().collect();
    let mut by_entity: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in truth.iter().enumerate().filter(|(_, t)| !t.is_empty()) {
        by_entity.entry(t).or_default().push(i);
    }
    let mut shown = 0;
    for members in by_entity.values() {
        for (k, &a) in members.iter().enumerate() {
            for &b in &members[k + 1..] {
                let pair = (a.min(b) as u32, a.max(b) as u32);
                if shown < n && !proposed.contains(&pair) {
                    shown += 1;
                    for i in [a, b] {
                        println!("  {:?}", crate::identity::blocking::keys(&people[i]));
                    }
                    println!();
                }
            }
        }
    }
}

/// Up to `n` pairs graded for review, each with its fields' parts and whether it is true.
fn review(model: &Model, people: &[Person], truth: &[String], n: usize) {
    let pairs = candidate_pairs(people);
    let mut shown = 0;
    for (a, b) in pairs.into_iter().map(|(a, b)| (a as usize, b as usize)) {
        let s = model.score(&people[a], &people[b], people.len());
        if shown < n && matches!(s.grade, Grade::Probable | Grade::Possible) {
            shown += 1;
            let parts: Vec<String> = s
                .parts
                .iter()
                .map(|p| format!("{} {} {:+.1}", p.field, p.level, p.weight))
                .collect();
            println!(
                "{} p={:.3} same={}: {}",
                s.grade.code(),
                s.probability,
                !truth[a].is_empty() && truth[a] == truth[b],
                parts.join(", ")
            );
        }
    }
}
