//! The audit trail as FHIR (issue 24): every kind of access (a write, a read, a version read,
//! a search, a refusal of authorization, an HL7v2 message, a client's failed authentication)
//! is one AuditEvent, found by the parameters an auditor uses; only a token whose scope names
//! AuditEvent reads the trail, never a patient's; the hash chain finds a row edited or removed.

use crate::helpers::{Backend, TestApp, mint, spawn_with};
use crate::mllp_client::Mllp;
use emrsync::store::audit;
use serde_json::{Value, json};
use std::time::Duration;

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |s| {
        s.mllp = Some("127.0.0.1:0".into());
        s.audit_flush_ms = 50;
    })
    .await
}

/// A request with its own correlation id (`X-Request-Id`), so its AuditEvents can be counted.
pub async fn with_id(app: &TestApp, req: reqwest::RequestBuilder, id: &str) -> u16 {
    app.send(req.header("x-request-id", id)).await.status
}

/// Every AuditEvent of the trail (newest first), through the API, once `pred` holds for them.
pub async fn trail(
    app: &TestApp,
    token: &str,
    query: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut events = Vec::new();
    for _ in 0..100 {
        let r = app
            .send_as(
                token,
                reqwest::Method::GET,
                &format!("AuditEvent?{query}&_count=1000"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        events = r.json()["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e["resource"].clone())
            .collect();
        if pred(&events) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    events
}

pub fn correlation(e: &Value) -> &str {
    e["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|x| x["what"]["identifier"]["value"].as_str())
        .unwrap_or("")
}

pub fn of<'a>(events: &'a [Value], id: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| correlation(e) == id).collect()
}

pub fn entities(e: &Value) -> Vec<String> {
    e["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["what"]["reference"].as_str().map(str::to_string))
        .collect()
}

async fn every_access_is_one_audit_event(app: TestApp) {
    let auditor = mint(&app.database, &app.base, "system/AuditEvent.rs", None);
    // a write, a read, a version read, a search, a read of nothing
    let created = app
        .send(
            app.client
                .post(app.url("Patient"))
                .header("x-request-id", "a-create")
                .header("content-type", "application/fhir+json")
                .body(
                    json!({"resourceType": "Patient", "name": [{"family": "Audited"}]}).to_string(),
                ),
        )
        .await;
    assert_eq!(created.status, 201);
    let pid = created.json()["id"].as_str().unwrap().to_string();
    let obs = app
        .post(
            "Observation",
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "K"},
                    "subject": {"reference": format!("Patient/{pid}")}}),
        )
        .await;
    let oid = obs.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        with_id(
            &app,
            app.client.get(app.url(&format!("Observation/{oid}"))),
            "a-read"
        )
        .await,
        200
    );
    assert_eq!(
        with_id(
            &app,
            app.client
                .get(app.url(&format!("Patient/{pid}/_history/1"))),
            "a-vread"
        )
        .await,
        200
    );
    assert_eq!(
        with_id(
            &app,
            app.client
                .get(app.url(&format!("Observation?subject=Patient/{pid}"))),
            "a-search"
        )
        .await,
        200
    );
    assert_eq!(
        with_id(
            &app,
            app.client.get(app.url("Observation/nothing")),
            "a-missing"
        )
        .await,
        404
    );
    // refusals of authorization: no token, and a token that does not reach Patient
    assert_eq!(
        with_id(
            &app,
            app.anonymous.get(app.url(&format!("Patient/{pid}"))),
            "a-no-token"
        )
        .await,
        401
    );
    let narrow = mint(&app.database, &app.base, "system/Observation.rs", None);
    assert_eq!(
        with_id(
            &app,
            app.anonymous
                .get(app.url(&format!("Patient/{pid}")))
                .bearer_auth(&narrow),
            "a-narrow"
        )
        .await,
        403
    );
    // a client that fails to authenticate
    let r = app
        .anonymous
        .post(format!("{}/auth/token", app.root))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=nobody&client_secret=wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // an HL7v2 message
    let mut mllp = Mllp::connect(app.mllp.unwrap()).await;
    let ack = mllp
        .send(
            "MSH|^~\\&|REG|GOOD HEALTH|EMRSYNC|HUB|20261206120000||ADT^A04^ADT_A01|AUD1|P|2.5.1\r\
             EVN|A04|20261206120000\r\
             PID|1||A77^^^GH&1.2.840.114350.1&ISO^MR||Heard^Hal||19700101|M\r\
             PV1|1|E|ED^1^^GOOD HEALTH||||||||||||||||VA77^^^GH&1.2.840.114350.1&ISO^VN\r",
        )
        .await;
    assert_eq!(ack.code(), "AA");

    let events = trail(&app, &auditor, "date=ge2026-01-01", |e| {
        e.iter().any(|x| x["type"]["code"] == "110107") && !of(e, "a-narrow").is_empty()
    })
    .await;
    for id in [
        "a-create",
        "a-read",
        "a-vread",
        "a-search",
        "a-missing",
        "a-no-token",
        "a-narrow",
    ] {
        assert_eq!(of(&events, id).len(), 1, "{id}: {:#?}", of(&events, id));
    }
    let one = |id: &str| of(&events, id)[0].clone();
    let create = one("a-create");
    assert_eq!(
        (
            create["action"].as_str(),
            create["subtype"][0]["code"].as_str()
        ),
        (Some("C"), Some("create"))
    );
    assert_eq!(entities(&create)[0], format!("Patient/{pid}/_history/1"));
    let read = one("a-read");
    assert_eq!(read["outcome"], "0");
    assert_eq!(read["agent"][0]["network"]["address"], "127.0.0.1");
    assert!(
        read["agent"][0]["who"]["display"]
            .as_str()
            .unwrap()
            .starts_with("client")
    );
    let read_of = entities(&read);
    assert!(read_of.contains(&format!("Observation/{oid}")), "{read:#}");
    assert!(
        read_of.contains(&format!("Patient/{pid}")),
        "the read names its patient: {read:#}"
    );
    assert_eq!(one("a-vread")["subtype"][0]["code"], "vread");
    let search = one("a-search");
    let query = search["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["role"]["code"] == "24")
        .unwrap();
    assert!(
        query["description"]
            .as_str()
            .unwrap()
            .contains("subject=Patient")
    );
    assert_eq!(one("a-missing")["outcome"], "4");
    assert_eq!(one("a-no-token")["agent"][0]["who"]["display"], "anonymous");
    assert_eq!(one("a-narrow")["outcome"], "4");
    let logins: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"]["code"] == "110114")
        .collect();
    assert_eq!(logins.len(), 1, "{logins:#?}");
    assert_eq!(logins[0]["outcome"], "4");
    let messages: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"]["code"] == "110107")
        .collect();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["subtype"][0]["display"], "ADT^A04");
    assert_eq!(
        messages[0]["agent"][0]["who"]["display"],
        "hl7v2 REG@GOOD HEALTH"
    );

    // the auditor's questions: who saw this patient, and what did this client do
    let about = trail(&app, &auditor, &format!("patient={pid}"), |_| true).await;
    let seen: Vec<&str> = about.iter().map(correlation).collect();
    for id in [
        "a-create",
        "a-read",
        "a-vread",
        "a-search",
        "a-no-token",
        "a-narrow",
    ] {
        assert!(
            seen.contains(&id),
            "{id} missing from the patient's trail: {seen:?}"
        );
    }
    let refused = trail(&app, &auditor, "outcome=4&type=rest", |_| true).await;
    assert!(refused.iter().all(|e| e["outcome"] == "4"));
    assert_eq!(refused.len(), 3, "{refused:#?}");
    let reads = trail(
        &app,
        &auditor,
        &format!("entity=Observation/{oid}&subtype=read"),
        |_| true,
    )
    .await;
    assert_eq!(reads.len(), 1);
    // a Patient's own reads are posted under the patient's term: found as entity too
    let own = trail(
        &app,
        &auditor,
        &format!("entity=Patient/{pid}&subtype=vread"),
        |_| true,
    )
    .await;
    let own: Vec<&str> = own.iter().map(correlation).collect();
    assert_eq!(own, ["a-vread"], "the Patient's reads by entity");
    let r = app
        .send_as(
            &auditor,
            reqwest::Method::GET,
            "AuditEvent?nonsense=1",
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = app
        .send_as(
            &auditor,
            reqwest::Method::GET,
            &format!("AuditEvent/{}", read["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["recorded"], read["recorded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_access_is_one_audit_event_on_sqlite() {
    every_access_is_one_audit_event(spawn(Backend::Sqlite).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_access_is_one_audit_event_on_postgres() {
    every_access_is_one_audit_event(spawn(Backend::Postgres).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_audit_scope_reads_the_trail() {
    let app = spawn(Backend::Sqlite).await;
    let get = |scope: &str, patient: Option<&str>| {
        let token = mint(&app.database, &app.base, scope, patient);
        let app = &app;
        async move {
            app.send_as(&token, reqwest::Method::GET, "AuditEvent", None)
                .await
                .status
        }
    };
    assert_eq!(
        get("system/*.cruds", None).await,
        403,
        "a wildcard is not an audit scope"
    );
    assert_eq!(get("patient/AuditEvent.rs", Some("p1")).await, 403);
    assert_eq!(
        get("user/AuditEvent.rs", Some("p1")).await,
        403,
        "never with a patient"
    );
    assert_eq!(get("user/AuditEvent.rs", None).await, 200);
    assert_eq!(get("system/AuditEvent.rs", None).await, 200);
    let r = app
        .post("AuditEvent", &json!({"resourceType": "AuditEvent"}))
        .await;
    assert_eq!(r.status, 405, "{}", r.text);
}

mod the_chain_finds_a_row_edited_or_removed {
    use crate::helpers::Backend;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::the_chain_finds_a_row_edited_or_removed(Backend::Sqlite).await
    }
    // sealed there by one statement per batch, not per row
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::the_chain_finds_a_row_edited_or_removed(Backend::Postgres).await
    }
}

async fn the_chain_finds_a_row_edited_or_removed(backend: Backend) {
    use diesel::prelude::*;
    use emrsync::store::schema::{audit_blocks as b, audit_postings as p};
    let app = spawn(backend).await;
    for n in 0..5 {
        app.post(
            "Patient",
            &json!({"resourceType": "Patient", "name": [{"family": format!("C{n}")}]}),
        )
        .await;
        app.get("Patient?name=C").await;
    }
    let mut conn = app.db();
    for _ in 0..100 {
        if unsealed(&mut conn) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let clean = audit::verify(&mut conn).unwrap();
    assert!(clean.problems.is_empty(), "{clean:?}");
    assert!(clean.rows >= 10);
    // the CLI says the same, and exports the trail as ndjson
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_emrsync"));
        cmd.args(args).arg("--data-dir").arg(app.dir.path());
        if let emrsync::store::Database::Postgres(url) = &app.database {
            cmd.args(["--database-url", url.expose()]);
        }
        cmd.output().unwrap()
    };
    let ok = cli(&["audit", "verify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let exported = cli(&["audit", "export"]);
    let lines: Vec<Value> = String::from_utf8(exported.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() as i64 >= clean.rows);
    assert!(lines.iter().all(|e| e["resourceType"] == "AuditEvent"));

    // someone rewrites who read: the chain breaks at that block
    let rewritten = diesel::update(b::table.filter(b::chain_pos.eq(3)))
        .set(b::body.eq(diesel::dsl::sql::<diesel::sql_types::Text>(
            "replace(body, '\"actor\":\"', '\"actor\":\"someone else, not ')",
        )))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(rewritten, 1);
    let edited = audit::verify(&mut conn).unwrap();
    assert!(
        edited.problems.iter().any(|p| p.starts_with("block 3 ")),
        "{edited:?}"
    );
    let broken = cli(&["audit", "verify"]);
    assert!(!broken.status.success());
    // and removes a block: the gap is named
    diesel::delete(b::table.filter(b::chain_pos.eq(5)))
        .execute(&mut conn)
        .unwrap();
    let removed = audit::verify(&mut conn).unwrap();
    assert!(
        removed
            .problems
            .iter()
            .any(|p| p.contains("blocks 5 to 5 are missing")),
        "{removed:?}"
    );
    // and hides a block from searches by removing what finds it: named too (a block posted
    // already: one not posted yet is read whole by searches)
    let last: i64 = b::table
        .filter(b::posted.eq(true))
        .select(diesel::dsl::max(b::chain_pos))
        .get_result::<Option<i64>>(&mut conn)
        .unwrap()
        .unwrap();
    let seq: i64 = b::table
        .filter(b::chain_pos.eq(last))
        .select(b::seq)
        .get_result(&mut conn)
        .unwrap();
    diesel::delete(p::table.filter(p::block.eq(seq)))
        .execute(&mut conn)
        .unwrap();
    let hidden = audit::verify(&mut conn).unwrap();
    assert!(
        hidden
            .problems
            .iter()
            .any(|p| p.starts_with(&format!("block {last} "))
                && p.contains("index terms are missing")),
        "{hidden:?}"
    );
}

/// Blocks stored but not sealed yet (the flusher seals them within its interval).
pub fn unsealed(c: &mut emrsync::store::DbConnection) -> i64 {
    use diesel::prelude::*;
    use emrsync::store::schema::audit_blocks as b;
    b::table
        .filter(b::chain_pos.is_null())
        .count()
        .get_result(c)
        .unwrap()
}
