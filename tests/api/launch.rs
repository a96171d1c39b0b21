//! SMART standalone launch, driven as a browser and an app would over HTTP: the authorize
//! request, the login and consent forms, the redirect with a code, and the code's exchange with
//! PKCE; then the token at work, and every way the flow must refuse.

use crate::helpers::{Backend, TestApp, spawn};
use emrsync::auth::clients::{self, ClientKind, NewClient};
use emrsync::auth::secret::sha256_b64url;
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const SCOPE: &str = "openid fhirUser launch/patient patient/*.rs";

pub struct Flow<'a> {
    app: &'a TestApp,
    /// Does not follow redirects: the test reads each Location as an app would.
    browser: reqwest::Client,
    verifier: String,
    scope: String,
    username: String,
}

impl<'a> Flow<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Flow {
            app,
            browser: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            verifier: emrsync::auth::secret::random_token(),
            scope: SCOPE.into(),
            username: "pat".into(),
        }
    }

    pub fn authorize_params(&self) -> Vec<(String, String)> {
        [
            ("response_type", "code"),
            ("client_id", "app"),
            ("redirect_uri", REDIRECT),
            ("scope", &self.scope),
            ("state", "st-123"),
            ("aud", &self.app.base),
            ("code_challenge", &sha256_b64url(&self.verifier)),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn authorize_url(&self, params: &[(String, String)]) -> String {
        format!(
            "{}/auth/authorize?{}",
            self.app.root,
            serde_urlencoded::to_string(params).unwrap()
        )
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.browser.get(url).send().await.unwrap()
    }

    pub async fn post_form(&self, path: &str, form: &[(String, String)]) -> reqwest::Response {
        self.browser
            .post(format!("{}/auth/{path}", self.app.root))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap()
    }

    /// Sign in as `self.username`; the consent page and the ticket its form carries.
    async fn sign_in(&self, params: &[(String, String)], password: &str) -> (String, String) {
        let mut login = params.to_vec();
        login.push(("username".into(), self.username.clone()));
        login.push(("password".into(), password.into()));
        let consent = self.post_form("authorize", &login).await;
        assert_eq!(consent.status(), 200, "signed in");
        // the consent form's answer redirects to the app: its origin, and only it, is allowed
        let csp = consent.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("form-action 'self' http://127.0.0.1:9;"),
            "{csp}"
        );
        let html = consent.text().await.unwrap();
        let ticket = regex::Regex::new(r#"name="ticket" value="([^"]+)""#)
            .unwrap()
            .captures(&html)
            .expect("a ticket in the consent form")[1]
            .to_string();
        (html, ticket)
    }

    /// Sign in and approve; the query of the redirect back to the app.
    pub async fn approve(
        &self,
        params: &[(String, String)],
        password: &str,
    ) -> Vec<(String, String)> {
        let page = self.get(&self.authorize_url(params)).await;
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("name=\"password\""));
        let (html, ticket) = self.sign_in(params, password).await;
        assert!(
            html.contains("patient/*.rs"),
            "the consent page shows the scopes"
        );
        let back = self
            .post_form(
                "consent",
                &[
                    ("ticket".into(), ticket),
                    ("decision".into(), "approve".into()),
                ],
            )
            .await;
        redirect_query(&back)
    }

    async fn exchange(&self, code: &str, verifier: &str, redirect: &str) -> (u16, Value) {
        let form: Vec<(String, String)> = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("client_id", "app"),
            ("code_verifier", verifier),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = self.post_form("token", &form).await;
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

/// The query parameters of a 302 back to the app's redirect URI.
fn redirect_query(r: &reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(r.status(), 302, "a redirect back to the app");
    let location = r.headers()["location"].to_str().unwrap();
    let (target, query) = location.split_once('?').unwrap();
    assert_eq!(target, REDIRECT);
    serde_urlencoded::from_str(query).unwrap()
}

fn get<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub async fn setup(app: &TestApp) -> (String, String) {
    clients::add(
        &mut app.db(),
        &NewClient {
            client_id: "app".into(),
            kind: ClientKind::Public,
            scope: format!("{SCOPE} launch offline_access"),
            redirect_uris: vec![REDIRECT.into()],
            secret: None,
            jwks: None,
            jwks_uri: None,
        },
    )
    .unwrap();
    let (me, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Self"}]}))
        .await;
    let (other, _) = app
        .create(&json!({"resourceType":"Patient","name":[{"family":"Other"}]}))
        .await;
    emrsync::auth::users::add(
        &mut app.db(),
        "pat",
        "s3cret-pass",
        &format!("Patient/{me}"),
    )
    .unwrap();
    (me, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_signs_in_and_the_app_reads_their_record() {
    let app = spawn(Backend::Sqlite).await;
    let (me, other) = setup(&app).await;
    let flow = Flow::new(&app);
    let params = flow.authorize_params();

    // a wrong password shows the form again, and nothing else
    let mut bad = params.clone();
    bad.push(("username".into(), "pat".into()));
    bad.push(("password".into(), "guess".into()));
    let r = flow.post_form("authorize", &bad).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Wrong username or password")
    );

    let back = flow.approve(&params, "s3cret-pass").await;
    assert_eq!(get(&back, "state"), Some("st-123"));
    let code = get(&back, "code").expect("a code").to_string();

    let (status, body) = flow.exchange(&code, &flow.verifier, REDIRECT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["patient"], me.as_str());
    assert_eq!(body["need_patient_banner"], true);
    assert_eq!(body["scope"], SCOPE);
    let id_token = body["id_token"]
        .as_str()
        .expect("openid fhirUser gives an id_token");
    let claims: Value = {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(id_token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["fhirUser"], format!("{}/Patient/{me}", app.base));
    assert_eq!(claims["aud"], "app");

    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_as(token, &format!("Patient/{me}")).await.status,
        200
    );
    assert_eq!(
        app.get_as(token, &format!("Patient/{other}")).await.status,
        404
    );
    let write = app
        .send_as(
            token,
            reqwest::Method::POST,
            "Patient",
            Some(&json!({"resourceType":"Patient"})),
        )
        .await;
    assert_eq!(write.status, 403, "read scopes only");

    // a code works once
    let (status, body) = flow.exchange(&code, &flow.verifier, REDIRECT).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_refuses_what_it_must() {
    let app = spawn(Backend::Postgres).await;
    setup(&app).await;
    let flow = Flow::new(&app);
    let params = flow.authorize_params();
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> =
            params.iter().filter(|(k, _)| k != name).cloned().collect();
        if !value.is_empty() {
            p.push((name.to_string(), value.to_string()));
        }
        p
    };

    // a redirect URI the client did not register is never redirected to
    let r = flow
        .get(&flow.authorize_url(&with("redirect_uri", "http://evil.example/cb")))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    let r = flow
        .get(&flow.authorize_url(&with("client_id", "nobody")))
        .await;
    assert_eq!(r.status(), 400);

    // the others go back to the app with an error
    for (why, p, error) in [
        (
            "plain PKCE",
            with("code_challenge_method", "plain"),
            "invalid_request",
        ),
        ("no PKCE", with("code_challenge", ""), "invalid_request"),
        (
            "another server's aud",
            with("aud", "https://elsewhere.example/fhir"),
            "invalid_request",
        ),
        ("no state", with("state", ""), "invalid_request"),
        (
            "token response type",
            with("response_type", "token"),
            "unsupported_response_type",
        ),
        (
            "no allowed scope",
            with("scope", "system/*.cruds"),
            "invalid_scope",
        ),
    ] {
        let r = flow.get(&flow.authorize_url(&p)).await;
        let q = redirect_query(&r);
        assert_eq!(get(&q, "error"), Some(error), "{why}");
    }

    // the user says no
    let page = flow.get(&flow.authorize_url(&params)).await;
    assert_eq!(page.status(), 200);
    let (_, ticket) = flow.sign_in(&params, "s3cret-pass").await;
    let r = flow
        .post_form(
            "consent",
            &[
                ("ticket".into(), ticket),
                ("decision".into(), "deny".into()),
            ],
        )
        .await;
    assert_eq!(get(&redirect_query(&r), "error"), Some("access_denied"));
    // a forged ticket is no sign-in
    let r = flow
        .post_form(
            "consent",
            &[
                ("ticket".into(), app.token.clone()),
                ("decision".into(), "approve".into()),
            ],
        )
        .await;
    assert_eq!(r.status(), 400, "an access token is not a login ticket");

    // PKCE and the redirect URI are checked at the exchange
    let code = get(&flow.approve(&params, "s3cret-pass").await, "code")
        .unwrap()
        .to_string();
    let (status, body) = flow
        .exchange(
            &code,
            "not-the-verifier-not-the-verifier-0123456789",
            REDIRECT,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "PKCE mismatch"
    );
    let (status, _) = flow.exchange(&code, &flow.verifier, REDIRECT).await;
    assert_eq!(status, 400, "a code that met a wrong verifier is spent");
    let code = get(&flow.approve(&params, "s3cret-pass").await, "code")
        .unwrap()
        .to_string();
    let (status, body) = flow
        .exchange(&code, &flow.verifier, "http://127.0.0.1:9/other")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "redirect_uri mismatch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_a_replayed_one_ends_the_grant() {
    let app = spawn(Backend::Sqlite).await;
    let (me, _) = setup(&app).await;
    let mut flow = Flow::new(&app);
    flow.scope = format!("{SCOPE} offline_access");
    let params = flow.authorize_params();
    let code = get(&flow.approve(&params, "s3cret-pass").await, "code")
        .unwrap()
        .to_string();
    let (status, body) = flow.exchange(&code, &flow.verifier, REDIRECT).await;
    assert_eq!(status, 200, "{body}");
    let first = body["refresh_token"]
        .as_str()
        .expect("offline_access gives a refresh token")
        .to_string();

    let refresh = |token: String, scope: Option<&'static str>| {
        let mut form = vec![
            ("grant_type".to_string(), "refresh_token".to_string()),
            ("refresh_token".to_string(), token),
            ("client_id".to_string(), "app".to_string()),
        ];
        if let Some(s) = scope {
            form.push(("scope".into(), s.into()));
        }
        let flow = &flow;
        async move {
            let r = flow.post_form("token", &form).await;
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = refresh(first.clone(), Some("patient/Observation.rs")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["scope"], "patient/Observation.rs",
        "a refresh may narrow the grant"
    );
    assert_eq!(body["patient"], me.as_str());
    let second = body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second, first, "rotated");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(app.get_as(token, "Observation").await.status, 200);
    assert_eq!(
        app.get_as(token, &format!("Patient/{me}")).await.status,
        403,
        "narrowed"
    );

    let (status, body) = refresh(second.clone(), Some("patient/*.cruds")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    // a refused request leaves the token unspent
    let (status, body) = refresh(second, None).await;
    assert_eq!(status, 200, "{body}");

    // a fresh grant, then its first token replayed after rotation: the family dies
    let code = get(&flow.approve(&params, "s3cret-pass").await, "code")
        .unwrap()
        .to_string();
    let (_, body) = flow.exchange(&code, &flow.verifier, REDIRECT).await;
    let old = body["refresh_token"].as_str().unwrap().to_string();
    let (status, body) = refresh(old.clone(), None).await;
    assert_eq!(status, 200);
    let newer = body["refresh_token"].as_str().unwrap().to_string();
    let (status, body) = refresh(old, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "replay"
    );
    let (status, body) = refresh(newer, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the family is revoked: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ehr_launches_an_app_in_its_patient_and_encounter() {
    let app = spawn(Backend::Postgres).await;
    let (me, other) = setup(&app).await;
    emrsync::auth::users::add(&mut app.db(), "drx", "s3cret-pass", "Practitioner/dr1").unwrap();
    let (enc, _) = app
        .create(&json!({"resourceType":"Encounter","status":"in-progress",
            "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},
            "subject":{"reference":format!("Patient/{other}")}}))
        .await;
    let context = json!({"patient": other, "encounter": enc, "intent": "reconcile-medications",
        "need_patient_banner": false, "smart_style_url": "https://ehr.example/style.json"});
    let launch_url = format!("{}/auth/launch", app.root);
    let minted = app
        .send(
            app.client
                .post(&launch_url)
                .header("content-type", "application/json")
                .body(context.to_string()),
        )
        .await;
    assert_eq!(minted.status, 200, "{}", minted.text);
    let handle = minted.json()["launch"].as_str().unwrap().to_string();
    let anonymous = app
        .send(app.anonymous.post(&launch_url).body(context.to_string()))
        .await;
    assert_eq!(anonymous.status, 401);
    let patient_app = app.token_for("patient/*.rs", Some(&me));
    let r = app
        .send(
            app.anonymous
                .post(&launch_url)
                .bearer_auth(&patient_app)
                .body(context.to_string()),
        )
        .await;
    assert_eq!(r.status, 403, "an app cannot mint launches");

    let mut flow = Flow::new(&app);
    flow.scope = "launch openid fhirUser patient/*.rs".into();
    flow.username = "drx".into();
    let mut params = flow.authorize_params();
    params.push(("launch".into(), handle));
    let code = get(&flow.approve(&params, "s3cret-pass").await, "code")
        .unwrap()
        .to_string();
    let (status, body) = flow.exchange(&code, &flow.verifier, REDIRECT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["patient"], other.as_str());
    assert_eq!(body["encounter"], enc.as_str());
    assert_eq!(body["intent"], "reconcile-medications");
    assert_eq!(body["need_patient_banner"], false);
    assert_eq!(body["smart_style_url"], "https://ehr.example/style.json");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_as(token, &format!("Encounter/{enc}")).await.status,
        200
    );
    assert_eq!(
        app.get_as(token, &format!("Patient/{me}")).await.status,
        404,
        "the launch's patient only"
    );

    // a handle must be one the server minted, and asks for the launch scope
    let mut forged = flow.authorize_params();
    forged.push(("launch".into(), app.token.clone()));
    let q = redirect_query(&flow.get(&flow.authorize_url(&forged)).await);
    assert_eq!(get(&q, "error"), Some("invalid_request"));
    flow.scope = "openid fhirUser patient/*.rs".into();
    let mut no_scope = flow.authorize_params();
    no_scope.push(("launch".into(), "x".into()));
    let q = redirect_query(&flow.get(&flow.authorize_url(&no_scope)).await);
    assert_eq!(get(&q, "error"), Some("invalid_scope"));
}

/// A practitioner's standalone launch with `launch/patient` picks the patient on the consent page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_practitioner_picks_the_patient_in_a_standalone_launch() {
    let app = spawn(Backend::Sqlite).await;
    let (me, other) = setup(&app).await;
    emrsync::auth::users::add(&mut app.db(), "drx", "s3cret-pass", "Practitioner/dr1").unwrap();
    let mut flow = Flow::new(&app);
    flow.username = "drx".into();
    let params = flow.authorize_params();
    let (html, ticket) = flow.sign_in(&params, "s3cret-pass").await;
    assert!(
        html.contains(&format!("value=\"{me}\"")) && html.contains(&format!("value=\"{other}\"")),
        "both patients offered"
    );
    let consent = |extra: Vec<(&str, String)>| {
        let mut form = vec![("ticket".to_string(), ticket.clone())];
        form.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        let flow = &flow;
        async move { flow.post_form("consent", &form).await }
    };
    let found = consent(vec![("decision", "search".into()), ("q", "Other".into())]).await;
    let found = found.text().await.unwrap();
    assert!(
        found.contains(&format!("value=\"{other}\""))
            && !found.contains(&format!("value=\"{me}\"")),
        "search by name"
    );
    let unpicked = consent(vec![("decision", "approve".into())]).await;
    assert_eq!(
        unpicked.status(),
        200,
        "no patient picked: the picker again"
    );
    let made_up = consent(vec![
        ("decision", "approve".into()),
        ("patient", "no-such-patient".into()),
    ])
    .await;
    assert_eq!(made_up.status(), 200, "an unknown patient cannot be picked");
    let back = consent(vec![
        ("decision", "approve".into()),
        ("patient", other.clone()),
    ])
    .await;
    let code = get(&redirect_query(&back), "code").unwrap().to_string();
    let (status, body) = flow.exchange(&code, &flow.verifier, REDIRECT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["patient"], other.as_str());
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_as(token, &format!("Patient/{other}")).await.status,
        200
    );
    assert_eq!(
        app.get_as(token, &format!("Patient/{me}")).await.status,
        404
    );
}
