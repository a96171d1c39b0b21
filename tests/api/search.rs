//! Search: the index is written with each version and replaced or removed with it.

use crate::helpers::TestApp;
use crate::on_both_backends;
use diesel::prelude::*;
use emrsync::store::schema::{search_reference, search_string, search_token};
use serde_json::json;

on_both_backends!(index_rows_follow_the_current_version);

async fn index_rows_follow_the_current_version(app: TestApp) {
    let (id, mut body) = app
        .create(
            &json!({"resourceType":"Patient","name":[{"family":"Müller"}],"gender":"female",
                        "generalPractitioner":[{"reference":"Practitioner/dr1"}]}),
        )
        .await;
    let families = |db: &mut emrsync::store::DbConnection| -> Vec<String> {
        search_string::table
            .filter(search_string::resource_id.eq(&id))
            .filter(search_string::param.eq("family"))
            .select(search_string::norm)
            .load(db)
            .unwrap()
    };
    let mut db = app.db();
    assert_eq!(families(&mut db), ["muller"]);
    let gender: Vec<(Option<String>, Option<String>)> = search_token::table
        .filter(search_token::resource_id.eq(&id))
        .filter(search_token::param.eq("gender"))
        .select((search_token::system, search_token::code))
        .load(&mut db)
        .unwrap();
    assert_eq!(
        gender,
        [(
            Some("http://hl7.org/fhir/administrative-gender".into()),
            Some("female".into())
        )]
    );

    body["name"][0]["family"] = json!("Ng");
    assert_eq!(app.put(&format!("Patient/{id}"), &body).await.status, 200);
    assert_eq!(
        families(&mut db),
        ["ng"],
        "an update replaces the old version's rows"
    );

    assert_eq!(app.delete(&format!("Patient/{id}")).await.status, 200);
    assert!(
        families(&mut db).is_empty(),
        "a deleted resource is not findable"
    );
    let refs: i64 = search_reference::table
        .filter(search_reference::resource_id.eq(&id))
        .count()
        .get_result(&mut db)
        .unwrap();
    assert_eq!(refs, 0);
}
