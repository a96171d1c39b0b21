//! `GET /admin`: how every feed is doing against its service levels over the last 24 hours,
//! and the queues now. The page asks to be read again every 30 seconds (a meta refresh: no
//! script).

use super::charts;
use super::page::{page, respond, seconds, unavailable, when};
use super::{AppState, signed_in};
use crate::ops::alerts::Alert;
use crate::ops::feeds::{self, Direction, Feed, OBJECTIVES};
use crate::ops::queues::{self, Queues};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};

const HOURS: i64 = 24;

pub async fn show(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let session = match signed_in(&state, &req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let user = Some((session.username.as_str(), session.csrf.as_str()));
    let store = state.store.clone();
    let read = web::block(move || {
        store.read(|c| {
            let recent = crate::ops::alerts::list(c, None, 20)?;
            let q = queues::read(c, store.publishing())?;
            Ok((feeds::read(c, HOURS)?, q, recent))
        })
    })
    .await;
    let Ok(Ok((feeds, queues, alerts))) = read else {
        return unavailable(user);
    };
    let now_hour = crate::fhir::resource::now_micros() / 3_600_000_000;
    let body = html! {
        meta http-equiv="refresh" content="30";
        h1 { "Overview" }
        (alert_list(&alerts))
        (tiles(&queues))
        h2 { "Feeds, last 24 hours" }
        p.muted {
            "Service levels: the hospital's, " (pct(OBJECTIVES[0].share)) " of messages answered within "
            (OBJECTIVES[0].seconds) " s; ours, " (pct(OBJECTIVES[1].share)) " within " (OBJECTIVES[1].seconds)
            " s. Received messages are timed from receipt to their first ACK; sent ones from queueing to the target's ACK."
        }
        (feed_table(&feeds, now_hour))
        h2 { "Route targets" }
        (targets(&queues))
        h2 { "Subscriptions with a backlog or failing" }
        (subscriptions(&queues))
    };
    respond(StatusCode::OK, page("Overview", "/admin", user, body))
}

fn pct(share: f64) -> String {
    let p = share * 100.0;
    match p.fract() == 0.0 {
        true => format!("{p:.0}%"),
        false => format!("{p:.1}%"),
    }
}

/// The alerts firing, loudest first, then the last resolved.
fn alert_list(alerts: &[Alert]) -> Markup {
    let firing: Vec<&Alert> = alerts.iter().filter(|a| a.status == "firing").collect();
    let resolved: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.status != "firing")
        .take(5)
        .collect();
    html! {
        @if firing.is_empty() {
            p.note #alerts { "No alert is firing." }
        } @else {
            table #alerts {
                thead { tr { th { "Alert" } th { "Subject" } th { "Since (UTC)" } th { "What" } } }
                tbody {
                    @for a in &firing {
                        tr class=(if a.severity == "critical" { "red" } else { "amber" }) data-rule=(a.rule) {
                            td { span.dot {} strong { (a.rule) } " " span.muted { (a.severity) } }
                            td { (a.subject) }
                            td { (when(a.raised_at)) }
                            td { (a.detail) }
                        }
                    }
                }
            }
        }
        @if !resolved.is_empty() {
            p.muted {
                "Resolved lately: "
                @for (i, a) in resolved.iter().enumerate() {
                    @if i > 0 { "; " }
                    (a.rule) " (" (a.subject) ") at " (a.resolved_at.map(when).unwrap_or_default())
                }
            }
        }
    }
}

fn tile(colour: &str, label: &str, value: String, href: Option<&str>) -> Markup {
    html! {
        div class={"tile " (colour)} {
            b { (value) }
            @match href {
                Some(h) => a href=(h) { (label) },
                None => span { (label) },
            }
        }
    }
}

fn tiles(q: &Queues) -> Markup {
    let colour = |bad: bool| if bad { "red" } else { "green" };
    let failing_targets = q
        .targets
        .iter()
        .filter(|t| t.failed > 0 || t.retrying.is_some())
        .count();
    let failing_subs = q.subscriptions.iter().filter(|s| s.failing).count();
    html! {
        div.tiles {
            (tile(colour(q.hl7v2_failed > 0), "HL7v2 exception queue", q.hl7v2_failed.to_string(),
                Some("/admin/messages?direction=in&disposition=failed")))
            (tile(if q.hl7v2_held > 0 { "amber" } else { "green" }, "held for review", q.hl7v2_held.to_string(),
                Some("/admin/messages?direction=in&disposition=held")))
            (tile(colour(q.dispatch.oldest_age > 5.0), "changes waiting for subscriptions",
                format!("{} ({})", q.dispatch.waiting, seconds(q.dispatch.oldest_age)), None))
            (tile(colour(q.route.oldest_age > 5.0), "changes waiting for routing",
                format!("{} ({})", q.route.waiting, seconds(q.route.oldest_age)), None))
            @if let Some(s) = q.stream {
                (tile(colour(s.oldest_age > 30.0), "changes waiting for the event stream",
                    format!("{} ({})", s.waiting, seconds(s.oldest_age)), None))
            }
            @for (source, d) in &q.vendors {
                (tile(colour(d.waiting > 0), &format!("vendor {source} exception queue"),
                    format!("{} ({})", d.waiting, seconds(d.oldest_age)), Some("/admin/vendors")))
            }
            (tile(colour(failing_targets > 0), "targets failing", failing_targets.to_string(), None))
            (tile(colour(failing_subs > 0), "subscriptions failing", failing_subs.to_string(), None))
        }
    }
}

fn feed_table(feeds: &[Feed], now_hour: i64) -> Markup {
    html! {
        @if feeds.is_empty() {
            p.muted { "No messages in the last 24 hours." }
        } @else {
            table #feeds {
                thead { tr {
                    th { "Feed" } th { "Direction" } th.num { "Messages" } th { "Per hour" }
                    th.num { "Failed" } th.num { "p50" } th.num { "p95" } th.num { "p99" } th { "Latency" }
                    th.num { "Within " (OBJECTIVES[0].seconds) " s" } th.num { "Within " (OBJECTIVES[1].seconds) " s" }
                } }
                tbody {
                    @for f in feeds {
                        @let health = f.health();
                        tr class=(health.word()) data-feed=(f.name) data-health=(health.word()) {
                            td { span.dot {} (f.name) }
                            td { @if f.direction == Direction::In { "in (HL7v2)" } @else { "out (target)" } }
                            td.num { (f.total) }
                            td { (charts::volume(&f.hours, now_hour)) }
                            td.num {
                                @if f.failed > 0 {
                                    a href={"/admin/messages?direction=" (if f.direction == Direction::In { "in" } else { "out" }) "&disposition=failed"} { (f.failed) }
                                } @else { "0" }
                            }
                            @for q in [0.5, 0.95, 0.99] {
                                td.num { (f.quantile(q).map(|s| format!("≤ {}", seconds(s))).unwrap_or_else(|| "–".into())) }
                            }
                            td { (charts::latency(f)) }
                            @for o in &OBJECTIVES {
                                @let met = f.meets(o);
                                td.num class=(if met { "green" } else { "red" }) {
                                    (pct(f.share_within(o.seconds))) @if met { " ✓" } @else { " ✗" }
                                }
                            }
                        }
                    }
                }
            }
            p.muted { "Red: messages wait in the exception queue, or the hospital's level is missed. Amber: ours is missed, or messages are held or still queued." }
        }
    }
}

fn targets(q: &Queues) -> Markup {
    html! {
        @if q.targets.is_empty() {
            p.muted { "No route targets are configured." }
        } @else {
            table {
                thead { tr { th { "Target" } th.num { "Queued" } th.num { "Oldest" } th.num { "Failed" } th { "Now" } } }
                tbody {
                    @for t in &q.targets {
                        tr {
                            td { (t.name) }
                            td.num { (t.pending.waiting) }
                            td.num { (if t.pending.waiting > 0 { seconds(t.pending.oldest_age) } else { "–".into() }) }
                            td.num { (t.failed) }
                            td {
                                @match &t.retrying {
                                    Some(e) => span.badge.failing { "retrying: " (e) },
                                    None => span.badge.sent { "taking messages" },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn subscriptions(q: &Queues) -> Markup {
    let shown: Vec<_> = q
        .subscriptions
        .iter()
        .filter(|s| s.failing || s.depth > 0)
        .take(50)
        .collect();
    html! {
        @if shown.is_empty() {
            p.muted { "Every subscription is up to date." }
        } @else {
            table {
                thead { tr { th { "Subscription" } th { "Channel" } th { "Status" } th.num { "Undelivered" } th { "Last error" } } }
                tbody {
                    @for s in shown {
                        tr {
                            td { (s.id) }
                            td { (s.channel) }
                            td { span class={"badge " (if s.failing { "failing" } else { "waiting" })} { (s.status) } }
                            td.num { (s.depth) }
                            td { (s.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}
