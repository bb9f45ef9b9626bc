//! The latency distribution as a hand-written SVG: latency against percentile
//! on a log scale of 1/(1-p), as HdrHistogram plots do.

use super::report::Report;

const W: f64 = 900.0;
const H: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// Ten distinguishable colours (matplotlib's "tab10"), repeated beyond.
const COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
/// Highest x: 99.9999 %.
const X_MAX: f64 = 6.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn x_of(percentile: f64) -> f64 {
    let rest = (1.0 - percentile / 100.0).max(10f64.powf(-X_MAX));
    (-rest.log10()).clamp(0.0, X_MAX)
}

/// A tick step of about a fifth of `max` (1, 2 or 5 times a power of ten).
fn nice_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1e-9);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

/// Draws one curve per `(label, report)`; latencies in milliseconds.
pub fn svg(series: &[(String, Report)]) -> String {
    let max_ms = series
        .iter()
        .flat_map(|(_, r)| r.percentiles.iter())
        .map(|p| p.latency_us as f64 / 1000.0)
        .fold(0.0f64, f64::max)
        .max(0.001);
    let step = nice_step(max_ms);
    let y_max = (max_ms / step).ceil() * step;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + x / X_MAX * plot_w;
    let py = |ms: f64| TOP + plot_h - ms / y_max * plot_h;
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    );
    s.push_str(&format!(
        "<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">Latency by percentile</text>\n",
        LEFT + plot_w / 2.0
    ));
    // Vertical grid: 0 %, 90 %, 99 %, ... 99.9999 %.
    let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"];
    for (i, label) in labels.iter().enumerate() {
        let x = px(i as f64);
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>\n",
            TOP + plot_h,
            TOP + plot_h + 18.0
        ));
    }
    let mut tick = 0.0;
    while tick <= y_max + step / 2.0 {
        let y = py(tick);
        s.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            trim(tick)
        ));
        tick += step;
    }
    s.push_str(&format!(
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"black\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile (log scale of 1/(1-p))</text>\n<text x=\"18\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {:.1})\">latency (ms)</text>\n",
        LEFT + plot_w / 2.0,
        H - 14.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    ));
    for (i, (label, report)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = report
            .percentiles
            .iter()
            .filter(|p| p.percentile < 100.0)
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    px(x_of(p.percentile)),
                    py(p.latency_us as f64 / 1000.0)
                )
            })
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
            points.join(" ")
        ));
        let y = TOP + 10.0 + i as f64 * 36.0;
        let x = LEFT + plot_w + 12.0;
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{:.0}/s p99 {:.2} ms</text>\n",
            x + 20.0,
            x + 26.0,
            y + 4.0,
            escape(label),
            x + 26.0,
            y + 18.0,
            report.throughput_per_s,
            report.p99_us as f64 / 1000.0
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn trim(v: f64) -> String {
    let t = format!("{v:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}
