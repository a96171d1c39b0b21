//! The `_filter` parameter (issue 28): an expression of the type's search parameters, answered
//! as the searches it spells out would be, on both backends; the defaults of `_contained`; and
//! the three-part composite parameters (MolecularSequence's coordinates).

use crate::helpers::{TestApp, matched_ids};
use crate::on_both_backends;
use serde_json::json;

on_both_backends!(
    filter_expressions_find_what_their_searches_find,
    three_part_composites_find_sequences_by_their_coordinates,
);

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    let r = app.get(query).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    matched_ids(&r.json())
}

async fn filtered(app: &TestApp, rtype: &str, expression: &str) -> Vec<String> {
    ids(app, &format!("{rtype}?_filter={}", enc(expression))).await
}

fn sorted(mut ids: Vec<&String>) -> Vec<String> {
    ids.sort();
    ids.into_iter().cloned().collect()
}

async fn filter_expressions_find_what_their_searches_find(app: TestApp) {
    let person = |given: &str, family: &str, gender: Option<&str>, born: Option<&str>| {
        let mut p =
            json!({"resourceType": "Patient", "name": [{"given": [given], "family": family}]});
        if let Some(g) = gender {
            p["gender"] = json!(g);
        }
        if let Some(b) = born {
            p["birthDate"] = json!(b);
        }
        p
    };
    let (peter, _) = app
        .create(&person(
            "Peter",
            "Chalmers",
            Some("male"),
            Some("2015-01-01"),
        ))
        .await;
    let (petra, _) = app
        .create(&person(
            "Petra",
            "Smith, Jr",
            Some("female"),
            Some("2010-06-01"),
        ))
        .await;
    let (anna, _) = app
        .create(&person("Anna", "Ito", Some("female"), None))
        .await;
    let (nobody, _) = app
        .create(&person("Sam", "Lee", None, Some("2016-02-02")))
        .await;
    let (obs, _) = app
        .create(&json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
            "subject": {"reference": format!("Patient/{peter}")}}))
        .await;
    app.create(&json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "9999-9"}]},
        "subject": {"reference": format!("Patient/{anna}")}}))
        .await;

    // the spec's examples
    assert_eq!(
        filtered(&app, "Patient", "name co \"pet\"").await,
        sorted(vec![&peter, &petra])
    );
    assert_eq!(
        filtered(&app, "Patient", "name co \"pet\"").await,
        ids(&app, "Patient?name:contains=pet").await
    );
    assert_eq!(
        filtered(
            &app,
            "Patient",
            "given eq \"Peter\" and birthdate ge 2014-10-10"
        )
        .await,
        [peter.as_str()]
    );
    assert_eq!(
        filtered(&app, "Observation", "code eq http://loinc.org|1234-5").await,
        [obs.as_str()]
    );
    assert_eq!(
        filtered(&app, "Observation", "subject.name co \"pet\"").await,
        [obs.as_str()]
    );
    // and, or, not, parentheses; and binds tighter than or
    assert_eq!(
        filtered(
            &app,
            "Patient",
            "gender eq female or birthdate ge 2015-01-01"
        )
        .await,
        sorted(vec![&peter, &petra, &anna, &nobody])
    );
    assert_eq!(
        filtered(
            &app,
            "Patient",
            "gender eq male or gender eq female and birthdate lt 2012-01-01"
        )
        .await,
        sorted(vec![&peter, &petra])
    );
    assert_eq!(
        filtered(
            &app,
            "Patient",
            "(gender eq male or gender eq female) and birthdate lt 2016-01-01"
        )
        .await,
        sorted(vec![&peter, &petra])
    );
    assert_eq!(
        filtered(&app, "Patient", "not (gender eq female)").await,
        sorted(vec![&peter, &nobody])
    );
    assert_eq!(
        filtered(&app, "Patient", "gender ne female").await,
        sorted(vec![&peter, &nobody])
    );
    // presence, exact strings with their commas, sw
    assert_eq!(
        filtered(&app, "Patient", "birthdate pr false").await,
        [anna.as_str()]
    );
    assert_eq!(
        filtered(&app, "Patient", "family eq \"Smith, Jr\"").await,
        [petra.as_str()]
    );
    assert!(
        filtered(&app, "Patient", "family eq \"smith, jr\"")
            .await
            .is_empty()
    );
    assert_eq!(
        filtered(&app, "Patient", "family sw \"chal\"").await,
        [peter.as_str()]
    );
    // with other parameters, and by POST
    assert_eq!(
        ids(
            &app,
            &format!("Patient?gender=female&_filter={}", enc("name co \"pet\""))
        )
        .await,
        [petra.as_str()]
    );
    let posted = app
        .send(
            app.client
                .post(app.url("Patient/_search"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("_filter={}", enc("birthdate pr false"))),
        )
        .await;
    assert_eq!(posted.status, 200, "{}", posted.text);
    assert_eq!(matched_ids(&posted.json()), [anna.as_str()]);
    // the defaults of _contained and _containedType are what every search does
    assert_eq!(
        ids(
            &app,
            "Patient?birthdate=ge2015-01-01&_contained=false&_containedType=container"
        )
        .await,
        sorted(vec![&peter, &nobody])
    );
    // (searching inside contained resources, `_contained=true`: tests/api/search_contained.rs)
    // what it cannot mean is refused, saying why
    for (expression, says) in [
        ("name ew \"son\"", "ew"),
        (
            "related[type eq has-component].target pr true",
            "sub-filters",
        ),
        ("nonsense eq 1", "nonsense"),
        ("(gender eq male", ")"),
    ] {
        let r = app
            .get(&format!("Patient?_filter={}", enc(expression)))
            .await;
        assert_eq!(r.status, 400, "{expression}: {}", r.text);
        assert!(r.text.contains(says), "{expression}: {}", r.text);
    }
}

async fn three_part_composites_find_sequences_by_their_coordinates(app: TestApp) {
    let sequence = |chromosome: &str, start: i64, end: i64| {
        json!({"resourceType": "MolecularSequence", "type": "dna", "coordinateSystem": 0,
            "referenceSeq": {
                "chromosome": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/chromosome-human", "code": chromosome}]},
                "referenceSeqId": {"coding": [{"system": "http://www.ncbi.nlm.nih.gov/nuccore", "code": "NC_000001.11"}]},
                "strand": "watson", "windowStart": start - 3, "windowEnd": end + 6},
            "variant": [{"start": start, "end": end, "observedAllele": "C", "referenceAllele": "T"}]})
    };
    let (one, _) = app.create(&sequence("1", 22125503, 22125504)).await;
    let (two, _) = app.create(&sequence("2", 22125503, 22125504)).await;
    let (far, _) = app.create(&sequence("1", 50000000, 50000001)).await;
    let find = |query: &'static str| ids(&app, query);
    assert_eq!(
        find("MolecularSequence?chromosome-variant-coordinate=1$gt22125500$lt22125510").await,
        [one.as_str()]
    );
    // the chromosome comes from the resource (`%resource.referenceSeq.chromosome`), the
    // coordinates from each variant
    assert_eq!(
        find("MolecularSequence?chromosome-variant-coordinate=2$ge22125503$le22125504").await,
        [two.as_str()]
    );
    assert!(
        find("MolecularSequence?chromosome-variant-coordinate=1$gt22125503$lt22125510")
            .await
            .is_empty(),
        "the start must be after 22125503"
    );
    assert!(
        find("MolecularSequence?chromosome-variant-coordinate=1$gt22125500$lt22125504")
            .await
            .is_empty(),
        "the end must be before 22125504"
    );
    assert_eq!(
        find("MolecularSequence?chromosome-window-coordinate=1$ge22125400$le50000100").await,
        sorted(vec![&one, &far])
    );
    assert_eq!(
        find("MolecularSequence?referenceseqid-variant-coordinate=http://www.ncbi.nlm.nih.gov/nuccore|NC_000001.11$ge50000000$le50000001").await,
        [far.as_str()]
    );
    let r = app
        .get("MolecularSequence?chromosome-variant-coordinate=1$gt22125500")
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("value$value$value"), "{}", r.text);
}
