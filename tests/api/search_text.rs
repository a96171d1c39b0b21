//! Full-text search (issue 28): `_text` finds words of the narrative, `_content` of the whole
//! resource, with the same answers on both backends, kept current by every write and filled
//! in for what was stored before the index existed.

use crate::helpers::{TestApp, link, matched_ids};
use crate::on_both_backends;
use serde_json::{Value, json};

on_both_backends!(
    text_finds_the_narrative_and_content_the_whole_resource,
    the_text_index_follows_updates_and_deletes,
    text_combines_with_other_parameters_and_types,
    resources_stored_before_the_text_index_are_found_once_filled,
    text_searches_page_forward_and_back_in_id_order,
);

fn patient(family: &str, given: &str, narrative: &str) -> Value {
    json!({"resourceType": "Patient",
           "text": {"status": "generated",
                    "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{narrative}</div>")},
           "name": [{"family": family, "given": [given]}],
           "gender": "female"})
}

async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    let r = app.get(query).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    matched_ids(&r.json())
}

fn sorted(mut ids: Vec<&str>) -> Vec<String> {
    ids.sort();
    ids.into_iter().map(String::from).collect()
}

async fn text_finds_the_narrative_and_content_the_whole_resource(app: TestApp) {
    let (a, _) = app
        .create(&patient(
            "Zoë",
            "Anna",
            "<p>Seen for <b>chronic kidney disease</b> stage 3 &amp; type 2 diabetes.</p>",
        ))
        .await;
    let (b, _) = app
        .create(&patient(
            "Okafor",
            "Beatrice",
            "<p>Asthma, well controlled. Kidney function normal.</p>",
        ))
        .await;
    // narrative words, in any case, accents ignored both ways
    assert_eq!(
        ids(&app, "Patient?_text=kidney").await,
        sorted(vec![&a, &b])
    );
    assert_eq!(
        ids(&app, "Patient?_text=KIDNEY%20diabetes").await,
        [a.as_str()]
    );
    assert_eq!(ids(&app, "Patient?_content=zoe").await, [a.as_str()]);
    assert_eq!(ids(&app, "Patient?_content=Zo%C3%AB").await, [a.as_str()]);
    // a name is content, not narrative
    assert_eq!(ids(&app, "Patient?_content=okafor").await, [b.as_str()]);
    assert!(ids(&app, "Patient?_text=okafor").await.is_empty());
    // phrases keep their order; prefixes; alternatives; exclusions
    assert_eq!(
        ids(&app, "Patient?_text=%22kidney%20disease%22").await,
        [a.as_str()]
    );
    assert!(
        ids(&app, "Patient?_text=%22disease%20kidney%22")
            .await
            .is_empty()
    );
    assert_eq!(ids(&app, "Patient?_text=diab*").await, [a.as_str()]);
    assert!(ids(&app, "Patient?_text=diab").await.is_empty());
    assert_eq!(
        ids(&app, "Patient?_text=asthma%20OR%20diabetes").await,
        sorted(vec![&a, &b])
    );
    assert_eq!(
        ids(&app, "Patient?_text=asthma,diabetes").await,
        sorted(vec![&a, &b])
    );
    assert_eq!(
        ids(&app, "Patient?_text=kidney%20-asthma").await,
        [a.as_str()]
    );
    // tags separate words; markup and entity names are not words
    assert!(ids(&app, "Patient?_text=amp").await.is_empty());
    assert!(ids(&app, "Patient?_text=p").await.is_empty());
    // by POST as well
    let posted = app
        .send(
            app.client
                .post(app.url("Patient/_search"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("_content=beatrice"),
        )
        .await;
    assert_eq!(posted.status, 200, "{}", posted.text);
    assert_eq!(matched_ids(&posted.json()), [b.as_str()]);
    // what is not a text query is refused by name, never read as something else
    for bad in [
        "Patient?_text=-asthma",
        "Patient?_text=(a%20OR%20b)",
        "Patient?_content=",
    ] {
        let r = app.get(bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(
            r.text.contains("_text") || r.text.contains("_content"),
            "{}",
            r.text
        );
    }
}

async fn the_text_index_follows_updates_and_deletes(app: TestApp) {
    let (id, _) = app
        .create(&patient("Lind", "Maja", "<p>Penicillin allergy.</p>"))
        .await;
    assert_eq!(ids(&app, "Patient?_text=penicillin").await, [id.as_str()]);
    let mut changed = patient("Lind", "Maja", "<p>Latex allergy.</p>");
    changed["id"] = json!(id);
    let r = app.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(ids(&app, "Patient?_text=penicillin").await.is_empty());
    assert_eq!(ids(&app, "Patient?_text=latex").await, [id.as_str()]);
    // a patch that only touches content leaves the narrative's words, adds the new ones
    let r = app
        .send(
            app.client
                .patch(app.url(&format!("Patient/{id}")))
                .header("content-type", "application/json-patch+json")
                .body(
                    json!([{"op": "replace", "path": "/name/0/family", "value": "Lindqvist"}])
                        .to_string(),
                ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&app, "Patient?_content=lindqvist").await, [id.as_str()]);
    assert!(ids(&app, "Patient?_content=lind").await.is_empty());
    assert_eq!(ids(&app, "Patient?_text=latex").await, [id.as_str()]);
    // without a narrative, _text finds nothing of it
    let mut bare = json!({"resourceType": "Patient", "id": id, "name": [{"family": "Lindqvist"}]});
    let r = app.put(&format!("Patient/{id}"), &bare).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(ids(&app, "Patient?_text=latex").await.is_empty());
    assert_eq!(ids(&app, "Patient?_content=lindqvist").await, [id.as_str()]);
    assert_eq!(app.delete(&format!("Patient/{id}")).await.status, 200);
    assert!(ids(&app, "Patient?_content=lindqvist").await.is_empty());
    // brought back, it is found again
    bare["name"][0]["family"] = json!("Lindgren");
    let r = app.put(&format!("Patient/{id}"), &bare).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(ids(&app, "Patient?_content=lindgren").await, [id.as_str()]);
}

async fn text_combines_with_other_parameters_and_types(app: TestApp) {
    let (p, _) = app
        .create(&patient("Haddad", "Omar", "<p>Hypertension.</p>"))
        .await;
    let mut male = patient("Haddad", "Karim", "<p>Hypertension.</p>");
    male["gender"] = json!("male");
    let (m, _) = app.create(&male).await;
    let (obs, _) = app
        .create(&json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "Blood pressure, hypertension follow-up"},
            "subject": {"reference": format!("Patient/{p}")}}))
        .await;
    assert_eq!(
        ids(&app, "Patient?_text=hypertension&gender=male").await,
        [m.as_str()]
    );
    // repeated parameters are all required
    assert_eq!(
        ids(&app, "Patient?_content=haddad&_content=omar").await,
        [p.as_str()]
    );
    // across types, and through a chain and a reverse chain
    assert_eq!(
        ids(&app, "?_type=Patient,Observation&_content=hypertension").await,
        sorted(vec![&p, &m, &obs])
    );
    // and without _type: every type's matches, the text index read once
    assert_eq!(
        ids(&app, "?_content=hypertension").await,
        sorted(vec![&p, &m, &obs])
    );
    assert_eq!(
        ids(&app, "Observation?subject:Patient._content=omar").await,
        [obs.as_str()]
    );
    assert_eq!(
        ids(&app, "Patient?_has:Observation:subject:_content=pressure").await,
        [p.as_str()]
    );
    // in a compartment
    assert_eq!(
        ids(
            &app,
            &format!("Patient/{m}/Observation?_content=hypertension")
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(
            &app,
            &format!("Patient/{p}/Observation?_content=hypertension")
        )
        .await,
        [obs.as_str()]
    );
    // the CapabilityStatement says so
    let cs = app.get("metadata").await.json();
    let names: Vec<&str> = cs["rest"][0]["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["_text", "_content", "_filter"]);
}

async fn resources_stored_before_the_text_index_are_found_once_filled(app: TestApp) {
    use diesel::prelude::*;
    use emrsync::store::db::DbConnection;
    let (id, _) = app
        .create(&patient("Mbeki", "Thandi", "<p>Migraine.</p>"))
        .await;
    // as a database from before the index would be: no text rows at all
    let mut conn = app.db();
    match &mut conn {
        DbConnection::Sqlite(c) => {
            diesel::sql_query("DELETE FROM search_text_rows")
                .execute(c)
                .unwrap();
            diesel::sql_query("INSERT INTO search_text (search_text) VALUES ('delete-all')")
                .execute(c)
                .unwrap();
        }
        DbConnection::Pg(c) => {
            diesel::sql_query("DELETE FROM search_text")
                .execute(c)
                .unwrap();
            diesel::sql_query("DELETE FROM search_narrative")
                .execute(c)
                .unwrap();
        }
    }
    assert!(ids(&app, "Patient?_text=migraine").await.is_empty());
    // the migration that added the index leaves its backfill pending; the next start runs it
    // (and again after a crash halfway: the row goes only once it is done)
    diesel::sql_query("INSERT INTO pending_backfills (name) VALUES ('search_text')")
        .execute(&mut conn)
        .unwrap();
    app.database.migrate().unwrap();
    assert_eq!(ids(&app, "Patient?_text=migraine").await, [id.as_str()]);
    assert_eq!(ids(&app, "Patient?_content=thandi").await, [id.as_str()]);
    // filling twice changes nothing
    assert!(emrsync::store::search_text::fill(&mut conn).unwrap() >= 1);
    assert_eq!(ids(&app, "Patient?_content=thandi").await, [id.as_str()]);
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let left: Count = diesel::sql_query("SELECT COUNT(*) AS n FROM pending_backfills")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(left.n, 0);
}

/// A search whose only filter is text reads its page from the text index (`search_by_text_alone`
/// in store/search): its pages must be the general plan's, in id order, forward and back, and
/// leave out what was deleted.
async fn text_searches_page_forward_and_back_in_id_order(app: TestApp) {
    let mut made = Vec::new();
    for n in 0..7 {
        made.push(
            app.create(&patient(
                &format!("Page{n}"),
                "Asha",
                "<p>Followed for gout.</p>",
            ))
            .await
            .0,
        );
    }
    app.create(&patient("Other", "Asha", "<p>Followed for asthma.</p>"))
        .await;
    let gone = made.pop().unwrap();
    assert_eq!(app.delete(&format!("Patient/{gone}")).await.status, 200);
    let mut want = made.clone();
    want.sort();
    // forward, three at a time: every match once, in id order
    let mut seen: Vec<String> = Vec::new();
    let mut pages: Vec<Value> = Vec::new();
    let mut next = Some(app.url("Patient?_text=gout&_count=3"));
    while let Some(url) = next {
        let r = app.get_url(&url).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let b = r.json();
        seen.extend(matched_ids(&b));
        next = link(&b, "next");
        pages.push(b);
    }
    assert_eq!(seen, want);
    assert_eq!(pages.len(), 2);
    // back from the last page: the first page again
    let back = link(&pages[1], "previous").expect("a previous link");
    let r = app.get_url(&back).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(matched_ids(&r.json()), want[..3]);
    // with a total (the general plan), the same first page
    let r = app.get("Patient?_text=gout&_count=3&_total=accurate").await;
    assert_eq!(r.json()["total"], 6);
    assert_eq!(matched_ids(&r.json()), want[..3]);
}
