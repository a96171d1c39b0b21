//! Charts drawn as inline SVG on the server (no script, no image requests): a feed's messages
//! per hour, with its failures in red, and its latency as a bar of shares against the service
//! levels.

use crate::ops::feeds::{Feed, Hour, OBJECTIVES};
use maud::{Markup, html};

/// Bars of messages per hour, the failed part of each in red; the tallest hour fills the
/// height. Each bar's title tells its numbers.
pub fn volume(hours: &[Hour], now_hour: i64) -> Markup {
    let (w, h, gap) = (8.0, 36.0, 2.0);
    let top = hours.iter().map(|x| x.total).max().unwrap_or(0).max(1) as f64;
    let width = hours.len() as f64 * (w + gap);
    let first = now_hour - hours.len() as i64 + 1;
    html! {
        svg width=(width) height=(h + 2.0) viewBox={"0 0 " (width) " " (h + 2.0)} role="img"
            aria-label="messages per hour, last 24 hours" {
            @for (i, hour) in hours.iter().enumerate() {
                @let x = i as f64 * (w + gap);
                @let all = hour.total as f64 / top * h;
                @let bad = hour.failed as f64 / top * h;
                g {
                    title { (format!("{:02}:00 UTC: {} messages, {} failed", (first + i as i64).rem_euclid(24), hour.total, hour.failed)) }
                    rect x=(x) y=(h - all + 1.0) width=(w) height=(all.max(if hour.total > 0 { 1.0 } else { 0.0 })) fill="#5b8fc7" {}
                    @if hour.failed > 0 {
                        rect x=(x) y=(h - bad + 1.0) width=(w) height=(bad.max(1.5)) fill="#c62828" {}
                    }
                    rect x=(x) y=(h + 1.0) width=(w) height="1" fill="#c5ccd3" {}
                }
            }
        }
    }
}

/// One bar split by latency: under 0.1 s, under 1 s, under 5 s, over; with the share of each.
pub fn latency(feed: &Feed) -> Markup {
    let bands: [(f64, &str, &str); 4] = [
        (0.1, "#2e7d32", "under 0.1 s"),
        (OBJECTIVES[1].seconds, "#8bc34a", "0.1 to 1 s"),
        (OBJECTIVES[0].seconds, "#e0a100", "1 to 5 s"),
        (f64::INFINITY, "#c62828", "over 5 s"),
    ];
    let total: i64 = feed.latency.iter().sum();
    let width = 160.0;
    // each band's start and share of the bar
    let mut bars = Vec::new();
    let mut below = 0.0;
    for (bound, colour, label) in bands {
        let within = match bound.is_finite() {
            true => feed.share_within(bound),
            false => 1.0,
        };
        if within > below {
            bars.push((below * width, within - below, colour, label));
        }
        below = within;
    }
    html! {
        @if total == 0 {
            span.muted { "no answers yet" }
        } @else {
            svg width=(width) height="14" viewBox={"0 0 " (width) " 14"} role="img" aria-label="latency shares" {
                @for (x, share, colour, label) in &bars {
                    g {
                        title { (format!("{label}: {:.1}%", share * 100.0)) }
                        rect x=(x) y="0" width=(share * width) height="14" fill=(colour) {}
                    }
                }
            }
        }
    }
}
