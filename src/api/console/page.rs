//! The frame of every dashboard page: the header with its links, the style sheet, and the
//! response's headers (no caching, no framing, no scripts: the pages are forms and links, and
//! work without JavaScript).

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The dashboard's sections, as the header links them.
const SECTIONS: [(&str, &str); 4] = [
    ("/admin", "Overview"),
    ("/admin/messages", "Messages"),
    ("/admin/vendors", "Vendor sources"),
    ("/admin/audit", "Audit trail"),
];

const STYLE: &str = r#"
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{background:#17324d;color:#fff;display:flex;align-items:center;gap:1.5em;padding:.6em 1.5em}
header a{color:#cfe3f7;text-decoration:none}header a.here{color:#fff;font-weight:600}
header .who{margin-left:auto;display:flex;gap:.8em;align-items:center}
header button{background:none;border:1px solid #7fa3c7;color:#fff;border-radius:4px;padding:.2em .7em;cursor:pointer}
main{padding:1.2em 1.5em;max-width:1400px}
h1{font-size:1.4em;margin:.2em 0 .8em}h2{font-size:1.1em;margin:1.6em 0 .5em}
table{border-collapse:collapse;background:#fff;width:100%;box-shadow:0 1px 2px #0001}
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e7eb;vertical-align:top}
th{background:#eef1f4;font-weight:600;font-size:.9em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.tiles{display:flex;gap:1em;flex-wrap:wrap}
.tile{background:#fff;padding:.7em 1em;min-width:11em;box-shadow:0 1px 2px #0001;border-top:4px solid #9aa5b1}
.tile b{display:block;font-size:1.6em}.tile.red{border-color:#c62828}.tile.green{border-color:#2e7d32}.tile.amber{border-color:#e0a100}
.dot{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.4em;vertical-align:middle}
.red .dot,.dot.red{background:#c62828}.green .dot,.dot.green{background:#2e7d32}.amber .dot,.dot.amber{background:#e0a100}
.badge{padding:.05em .5em;border-radius:3px;font-size:.85em;background:#e3e7eb}
.badge.failed,.badge.rejected,.badge.failing,.badge.failure{background:#fbe0e0;color:#8e1b1b}
.badge.applied,.badge.sent,.badge.delivered,.badge.success{background:#dcefdc;color:#1e5a20}
.badge.held,.badge.pending,.badge.waiting{background:#fdf0c8;color:#6b5100}
.badge.replayed{background:#e0e8f5;color:#24466e}
.error{background:#fbe0e0;border-left:4px solid #c62828;padding:.6em 1em;margin:.8em 0}
.note{background:#e6f1fb;border-left:4px solid #2f6fb0;padding:.6em 1em;margin:.8em 0}
pre.raw{background:#fff;padding:.8em;overflow-x:auto;box-shadow:0 1px 2px #0001;font-size:13px}
pre.raw mark{background:#ffd54f;outline:2px solid #c62828}
textarea{width:100%;font:13px monospace;min-height:12em}
form.search{display:flex;flex-wrap:wrap;gap:.6em;align-items:end;background:#fff;padding:.8em;box-shadow:0 1px 2px #0001}
form.search label{display:flex;flex-direction:column;font-size:.85em}
input,select{font:inherit;padding:.25em .4em}
button.go{background:#17324d;color:#fff;border:0;border-radius:4px;padding:.4em 1.1em;cursor:pointer}
.login{max-width:22em;margin:4em auto;background:#fff;padding:1.5em 2em;box-shadow:0 1px 3px #0002}
.login label{display:block;margin:.6em 0}.login input{width:100%;box-sizing:border-box}
svg text{font:10px system-ui,sans-serif;fill:#56606b}
.muted{color:#6b7580}
"#;

/// A page of the dashboard for the signed-in `user`; `here` is its section.
pub fn page(title: &str, here: &str, user: Option<(&str, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · emrsync" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "emrsync operations" }
                    @if let Some((name, csrf)) = user {
                        @for (href, label) in SECTIONS {
                            a.here[href == here] href=(href) { (label) }
                        }
                        div.who {
                            span { "Signed in as " (name) }
                            form method="post" action="/admin/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An HTML response: never cached, never framed, no script, forms posted only here.
pub fn respond(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header(("referrer-policy", "same-origin"))
        .insert_header((
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .body(markup.into_string())
}

/// 303 to `to` (after a form: the browser then asks for the page with GET).
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("location", to))
        .insert_header(("cache-control", "no-store"))
        .finish()
}

/// A page saying what went wrong, with its status.
pub fn trouble(status: StatusCode, user: Option<(&str, &str)>, text: &str) -> HttpResponse {
    let body = html! { h1 { (status.canonical_reason().unwrap_or("Error")) } p.error { (text) } };
    respond(status, page("Error", "", user, body))
}

/// 503: the database did not answer (the page may be asked for again).
pub fn unavailable(user: Option<(&str, &str)>) -> HttpResponse {
    trouble(
        StatusCode::SERVICE_UNAVAILABLE,
        user,
        "The database did not answer; try again.",
    )
}

/// `micros` as people read a time here: UTC to the second.
pub fn when(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// An instant (`2026-12-06T10:04:14.123456Z`) as `when` shows it.
pub fn when_instant(instant: &str) -> String {
    crate::fhir::resource::parse_instant(instant)
        .map(when)
        .unwrap_or_else(|| instant.to_string())
}

/// Seconds as people read a latency or an age.
pub fn seconds(s: f64) -> String {
    match s {
        s if s.is_infinite() => "over 60 s".into(),
        s if s < 1.0 => format!("{} ms", (s * 1000.0).round()),
        s if s < 120.0 => format!("{s:.1} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}
