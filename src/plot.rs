//! `mlwf results plot`: metric curves as a PNG (drawn here: axes, a grid with its values in a
//! built-in digit font, one colour per curve; which colour is which branch is printed beside
//! it) or as a compact terminal chart.

use std::io::BufWriter;
use std::path::Path;

use anyhow::Context;

/// One curve: `(step, value)` points in step order.
#[derive(Debug, Clone)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Colours of the curves, in order (a colour-blind-safe palette), and their names.
pub const COLOURS: [([u8; 3], &str); 6] = [
    ([0, 114, 178], "blue"),
    ([230, 159, 0], "orange"),
    ([0, 158, 115], "green"),
    ([204, 121, 167], "pink"),
    ([86, 180, 233], "sky"),
    ([213, 94, 0], "red"),
];
/// Terminal marks of the curves, in order.
const MARKS: [char; 6] = ['*', 'o', '+', 'x', '#', '@'];
/// Room left of and below the plot for the axis values, in pixels.
const LEFT: usize = 60;
const BOTTOM: usize = 28;
const PAD: usize = 12;
/// Axis values are drawn with 3×5 glyphs at this scale.
const SCALE: i64 = 2;

/// The 3×5 glyph of a character of a number, a row per byte (bit 2 is the left column).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        _ => return None,
    })
}

/// Width of `text` in pixels.
fn text_width(text: &str) -> i64 {
    text.chars().count() as i64 * 4 * SCALE
}

/// Draws `text` (digits, `.`, `-`) with its top-left corner at `(x, y)`.
fn draw_text(put: &mut impl FnMut(i64, i64, [u8; 3]), x: i64, y: i64, text: &str) {
    for (index, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        let left = x + index as i64 * 4 * SCALE;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            put(
                                left + col * SCALE + dx,
                                y + row as i64 * SCALE + dy,
                                [60, 60, 60],
                            );
                        }
                    }
                }
            }
        }
    }
}

/// An axis value: three decimals for the metric, whole steps.
fn label(value: f64, whole: bool) -> String {
    if whole {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

/// The ranges of all curves: `((x_min, x_max), (y_min, y_max))`, never empty.
pub fn bounds(curves: &[Curve]) -> ((f64, f64), (f64, f64)) {
    let all = || curves.iter().flat_map(|c| c.points.iter());
    let fold = |f: fn(&(f64, f64)) -> f64| {
        all()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let widen = |(lo, hi): (f64, f64)| {
        if !lo.is_finite() {
            (0.0, 1.0)
        } else if hi - lo < 1e-12 {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi)
        }
    };
    (widen(fold(|p| p.0)), widen(fold(|p| p.1)))
}

/// Writes the curves as a `width`×`height` PNG.
pub fn png(curves: &[Curve], path: &Path, width: usize, height: usize) -> anyhow::Result<()> {
    let mut pixels = vec![255u8; width * height * 3];
    let ((x0, x1), (y0, y1)) = bounds(curves);
    let (left, right, top, bottom) = (LEFT, width - PAD, PAD, height - BOTTOM);
    let to_px = |(x, y): (f64, f64)| {
        let px = left as f64 + (x - x0) / (x1 - x0) * (right - left) as f64;
        let py = bottom as f64 - (y - y0) / (y1 - y0) * (bottom - top) as f64;
        (px, py)
    };
    let mut put = |x: i64, y: i64, colour: [u8; 3]| {
        if x >= 0 && y >= 0 && (x as usize) < width && (y as usize) < height {
            let i = (y as usize * width + x as usize) * 3;
            pixels[i..i + 3].copy_from_slice(&colour);
        }
    };
    let grid = [225, 225, 225];
    for k in 0..=4 {
        let y = top + (bottom - top) * k / 4;
        let x = left + (right - left) * k / 4;
        for i in left..=right {
            put(i as i64, y as i64, grid);
        }
        for j in top..=bottom {
            put(x as i64, j as i64, grid);
        }
    }
    for k in 0..=4 {
        let y = top + (bottom - top) * k / 4;
        let x = left + (right - left) * k / 4;
        let value = label(y1 - (y1 - y0) * k as f64 / 4.0, false);
        let glyph_height = 5 * SCALE;
        draw_text(
            &mut put,
            left as i64 - 6 - text_width(&value),
            y as i64 - glyph_height / 2,
            &value,
        );
        let step = label(x0 + (x1 - x0) * k as f64 / 4.0, true);
        let centred =
            (x as i64 - text_width(&step) / 2).clamp(0, (width as i64 - text_width(&step)).max(0));
        draw_text(&mut put, centred, bottom as i64 + 8, &step);
    }
    for i in left..=right {
        put(i as i64, bottom as i64, [0, 0, 0]);
    }
    for j in top..=bottom {
        put(left as i64, j as i64, [0, 0, 0]);
    }
    for (index, curve) in curves.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()].0;
        let points: Vec<(f64, f64)> = curve.points.iter().map(|p| to_px(*p)).collect();
        for pair in points.windows(2) {
            line(&mut put, pair[0], pair[1], colour);
        }
        if let [only] = points.as_slice() {
            line(&mut put, *only, *only, colour);
        }
        // The legend: a swatch per curve, top right, in order.
        let sy = top as i64 + 4 + 8 * index as i64;
        for dx in 0..16 {
            for dy in 0..4 {
                put(right as i64 - 20 + dx, sy + dy, colour);
            }
        }
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().context("writing the PNG header")?;
    writer
        .write_image_data(&pixels)
        .with_context(|| format!("writing {}", path.display()))
}

/// A line two pixels thick from `a` to `b`.
fn line(put: &mut impl FnMut(i64, i64, [u8; 3]), a: (f64, f64), b: (f64, f64), colour: [u8; 3]) {
    let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let x = (a.0 + (b.0 - a.0) * t).round() as i64;
        let y = (a.1 + (b.1 - a.1) * t).round() as i64;
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            put(x + dx, y + dy, colour);
        }
    }
}

/// The curves as a `width`×`height` character chart with the y range on the left and a
/// legend below.
pub fn terminal(curves: &[Curve], metric: &str, width: usize, height: usize) -> String {
    let ((x0, x1), (y0, y1)) = bounds(curves);
    let mut grid = vec![vec![' '; width]; height];
    for (index, curve) in curves.iter().enumerate() {
        for &(x, y) in &curve.points {
            let col = ((x - x0) / (x1 - x0) * (width - 1) as f64).round() as usize;
            let row = ((y1 - y) / (y1 - y0) * (height - 1) as f64).round() as usize;
            grid[row.min(height - 1)][col.min(width - 1)] = MARKS[index % MARKS.len()];
        }
    }
    let mut text = format!("{metric}\n");
    for (r, row) in grid.iter().enumerate() {
        let label = match r {
            0 => format!("{y1:>9.4}"),
            r if r == height - 1 => format!("{y0:>9.4}"),
            _ => " ".repeat(9),
        };
        text += &format!("{label} |{}\n", row.iter().collect::<String>().trim_end());
    }
    text += &format!("{} +{}\n", " ".repeat(9), "-".repeat(width));
    text += &format!(
        "{}  {:<w$}{:>8}\n",
        " ".repeat(9),
        format!("step {x0}"),
        x1,
        w = width.saturating_sub(8)
    );
    for (index, curve) in curves.iter().enumerate() {
        text += &format!("  {} {}\n", MARKS[index % MARKS.len()], curve.label);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curves() -> Vec<Curve> {
        vec![
            Curve {
                label: "a".into(),
                points: vec![(0.0, 2.0), (10.0, 1.0), (20.0, 0.5)],
            },
            Curve {
                label: "b".into(),
                points: vec![(0.0, 2.0), (20.0, 1.5)],
            },
        ]
    }

    #[test]
    fn axis_values_are_drawn_glyph_by_glyph() {
        let mut lit = std::collections::HashSet::new();
        draw_text(
            &mut |x, y, _| {
                lit.insert((x, y));
            },
            0,
            0,
            "10",
        );
        // '1' has 8 pixels set, '0' has 12, each a SCALE×SCALE square; '1' sits left of '0'.
        assert_eq!(lit.len() as i64, 20 * SCALE * SCALE);
        assert!(lit
            .iter()
            .all(|&(x, y)| x < text_width("10") && y < 5 * SCALE));
        assert_eq!(
            (label(1.23456, false), label(200.0, true)),
            ("1.235".into(), "200".into())
        );
        assert!(glyph('x').is_none());
    }

    #[test]
    fn the_terminal_chart_spans_the_ranges_and_names_each_curve() {
        let chart = terminal(&curves(), "val/loss", 40, 8);
        let lines: Vec<&str> = chart.lines().collect();
        assert_eq!(lines[0], "val/loss");
        assert!(lines[1].starts_with("   2.0000 |"), "{chart}");
        assert!(lines[8].starts_with("   0.5000 |"), "{chart}");
        assert!(chart.contains("  * a\n  o b\n"), "{chart}");
        assert_eq!(bounds(&[]), ((0.0, 1.0), (0.0, 1.0)));
    }
}
