//! Charts as inline SVG, drawn here: no chart library, no script, nothing
//! fetched — they print as they show.

use std::fmt::Write;

use jiff::Timestamp;

use super::html::esc;
use crate::rotation::TokenStatus;

const WIDTH: f64 = 720.0;
const LABEL: f64 = 210.0;
const ROW: f64 = 26.0;

/// Token age against the rotation period, one bar per account: the bar is
/// the age, the dark tick the period; amber past three quarters of it, red
/// past it.
pub(crate) fn token_ages(tokens: &[TokenStatus]) -> String {
    let max = tokens
        .iter()
        .map(|t| t.age_days.unwrap_or(0).max(i64::from(t.rotate_every_days)))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let plot = WIDTH - LABEL - 90.0;
    let x = |d: f64| LABEL + d / max * plot;
    let height = ROW * tokens.len() as f64 + 30.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>Token age against rotation period, per account</title>"#
    );
    for (i, t) in tokens.iter().enumerate() {
        let y = 10.0 + ROW * i as f64;
        let period = f64::from(t.rotate_every_days);
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" class="lbl">{}</text>"#,
            LABEL - 8.0,
            y + 15.0,
            esc(&t.account)
        );
        match t.age_days {
            Some(age) => {
                let age = age.max(0) as f64;
                let class = if t.overdue || age > period {
                    "bad"
                } else if age > period * 0.75 {
                    "warn"
                } else {
                    "ok"
                };
                let _ = write!(
                    s,
                    r#"<rect x="{LABEL}" y="{y}" width="{:.1}" height="18" class="{class}"><title>{}: {} d of {} d</title></rect>"#,
                    (x(age) - LABEL).max(1.0),
                    esc(&t.account),
                    age,
                    period
                );
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{}" class="val">{} d / {} d</text>"#,
                    x(age.max(period)) + 6.0,
                    y + 14.0,
                    age,
                    period
                );
            }
            None => {
                let _ = write!(
                    s,
                    r#"<text x="{LABEL}" y="{}" class="val">no token stored</text>"#,
                    y + 14.0
                );
            }
        }
        let _ = write!(
            s,
            r#"<line x1="{p:.1}" x2="{p:.1}" y1="{}" y2="{}" class="period"/>"#,
            y - 2.0,
            y + 20.0,
            p = x(period)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{LABEL}" y="{}" class="axis">0 d</text><text x="{:.1}" y="{}" class="axis" text-anchor="end">{:.0} d</text></svg>"#,
        height - 4.0,
        LABEL + plot,
        height - 4.0,
        max
    );
    s
}

/// A value over time as bars: `points` oldest first, all one bucket wide.
pub(crate) fn series(title: &str, unit: &str, class: &str, points: &[(Timestamp, f64)]) -> String {
    let height = 150.0;
    let (left, bottom, top) = (100.0, 24.0, 12.0);
    let plot_w = WIDTH - left - 10.0;
    let plot_h = height - bottom - top;
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(title)
    );
    let _ = write!(
        s,
        r#"<line x1="{left}" x2="{}" y1="{}" y2="{}" class="base"/><text x="{}" y="{}" text-anchor="end" class="axis">{} {}</text><text x="{}" y="{}" text-anchor="end" class="axis">0</text>"#,
        left + plot_w,
        top + plot_h,
        top + plot_h,
        left - 6.0,
        top + 8.0,
        fmt_value(max),
        esc(unit),
        left - 6.0,
        top + plot_h
    );
    if points.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="axis">nothing recorded</text></svg>"#,
            left + 10.0,
            top + plot_h / 2.0
        );
        return s;
    }
    // Bars no wider than 40 px: one bucket is a bar, not a wall.
    let w = (plot_w / points.len() as f64).min(40.0);
    for (i, (at, v)) in points.iter().enumerate() {
        let h = v / scale * plot_h;
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" class="{class}"><title>{}: {} {}</title></rect>"#,
            left + w * i as f64 + w * 0.1,
            top + plot_h - h,
            (w * 0.8).max(0.5),
            h,
            at.strftime("%Y-%m-%d %H:%M UTC"),
            fmt_value(*v),
            esc(unit)
        );
    }
    let first = points.first().map(|p| p.0);
    let last = points.last().map(|p| p.0);
    if let (Some(first), Some(last)) = (first, last) {
        let _ = write!(
            s,
            r#"<text x="{left}" y="{}" class="axis">{}</text><text x="{}" y="{}" text-anchor="end" class="axis">{}</text>"#,
            height - 6.0,
            first.strftime("%Y-%m-%d %H:%M"),
            left + plot_w,
            height - 6.0,
            last.strftime("%Y-%m-%d %H:%M UTC")
        );
    }
    s.push_str("</svg>");
    s
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}
