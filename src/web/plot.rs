//! A chart of a query's answer as server-rendered SVG: one column along x (rows in their order,
//! as categories), a numeric column up y, drawn as a line or as bars. Pure drawing: it takes
//! the cells as text and knows nothing of queries or requests.

pub const WIDTH: f64 = 720.0;
pub const HEIGHT: f64 = 240.0;
/// Room left of the plot for the y labels, and below it for the x labels.
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 8.0;
/// Most x labels written (evenly spaced).
const X_LABELS: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Line,
    Bar,
}

impl Kind {
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "line" => Some(Kind::Line),
            "bar" => Some(Kind::Bar),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Line => "line",
            Kind::Bar => "bar",
        }
    }
}

/// One bar: its rectangle and its tooltip.
pub struct Bar {
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    pub title: String,
}

/// A label at a position.
pub struct Label {
    pub x: String,
    pub y: String,
    pub text: String,
}

/// A drawn chart, ready for the template.
pub struct Plot {
    pub kind: Kind,
    /// `x,y x,y …` of the line (empty for bars).
    pub points: String,
    pub bars: Vec<Bar>,
    pub x_labels: Vec<Label>,
    pub y_labels: Vec<Label>,
    /// Rows left out because their y was not a number.
    pub skipped: usize,
}

/// Draws `ys` (text of numbers; others are skipped) against `xs`; `None` when no y is a
/// number.
pub fn draw(kind: Kind, xs: &[Option<String>], ys: &[Option<String>]) -> Option<Plot> {
    let points: Vec<(String, f64)> = xs
        .iter()
        .zip(ys)
        .filter_map(|(x, y)| {
            let value = y.as_deref()?.parse::<f64>().ok().filter(|v| v.is_finite())?;
            Some((x.clone().unwrap_or_else(|| "NULL".into()), value))
        })
        .collect();
    if points.is_empty() {
        return None;
    }
    let skipped = xs.len().min(ys.len()) - points.len();
    let low = points.iter().map(|p| p.1).fold(0.0_f64, f64::min);
    let high = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let span = if high > low { high - low } else { 1.0 };
    let plot_width = WIDTH - LEFT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = plot_width / points.len() as f64;
    let x_of = |i: usize| LEFT + slot * (i as f64 + 0.5);
    let y_of = |v: f64| TOP + plot_height * (1.0 - (v - low) / span);
    let mut plot = Plot {
        kind,
        points: String::new(),
        bars: Vec::new(),
        x_labels: Vec::new(),
        y_labels: [high, (high + low) / 2.0, low]
            .into_iter()
            .map(|v| Label {
                x: format!("{:.0}", LEFT - 6.0),
                y: format!("{:.1}", y_of(v) + 4.0),
                text: number(v),
            })
            .collect(),
        skipped,
    };
    match kind {
        Kind::Line => {
            let coordinates: Vec<String> = points
                .iter()
                .enumerate()
                .map(|(i, (_, v))| format!("{:.1},{:.1}", x_of(i), y_of(*v)))
                .collect();
            plot.points = coordinates.join(" ");
        }
        Kind::Bar => {
            let zero = y_of(0.0_f64.clamp(low, high));
            plot.bars = points
                .iter()
                .enumerate()
                .map(|(i, (x, v))| {
                    let top = y_of(*v).min(zero);
                    Bar {
                        x: format!("{:.1}", x_of(i) - slot * 0.4),
                        y: format!("{top:.1}"),
                        width: format!("{:.1}", (slot * 0.8).max(0.5)),
                        height: format!("{:.1}", (y_of(*v) - zero).abs().max(0.5)),
                        title: format!("{x}: {}", number(*v)),
                    }
                })
                .collect();
        }
    }
    let step = points.len().div_ceil(X_LABELS).max(1);
    plot.x_labels = (0..points.len())
        .step_by(step)
        .map(|i| Label {
            x: format!("{:.1}", x_of(i)),
            y: format!("{:.0}", HEIGHT - 8.0),
            text: points[i].0.chars().take(19).collect(),
        })
        .collect();
    Some(plot)
}

/// A number for an axis: whole numbers plainly, others with two decimals.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::{draw, Kind, HEIGHT};

    fn texts(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| (!v.is_empty()).then(|| v.to_string())).collect()
    }

    #[test]
    fn lines_and_bars_scale_to_the_values() {
        let xs = texts(&["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]);
        let ys = texts(&["10", "", "30", "x"]);
        let line = draw(Kind::Line, &xs, &ys).unwrap();
        assert_eq!(line.skipped, 2);
        let points: Vec<(f64, f64)> = line
            .points
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(points.len(), 2);
        assert!(points[0].0 < points[1].0, "x grows with the rows");
        assert!(points[0].1 > points[1].1, "30 is drawn above 10");
        assert!(points[1].1 >= 0.0 && points[0].1 <= HEIGHT);
        let bars = draw(Kind::Bar, &xs, &ys).unwrap();
        assert_eq!(bars.bars.len(), 2);
        assert_eq!(bars.bars[1].title, "2024-01-03: 30");
        let tall: f64 = bars.bars[1].height.parse().unwrap();
        let short: f64 = bars.bars[0].height.parse().unwrap();
        assert!((tall / short - 3.0).abs() < 0.05, "{tall} vs {short}");
        assert!(draw(Kind::Bar, &xs, &texts(&["a", "", "b", ""])).is_none());
    }
}
