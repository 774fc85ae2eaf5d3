//! Drawing one synthetic clip: a textured shape over a textured background,
//! moved by its class's motion, with fresh pixel noise every frame.

use std::f64::consts::PI;

use super::{CLASSES, Clip, Split, SynthSpec, label_of};
use crate::data::rng::Rng;

#[derive(Clone, Copy)]
enum Shape {
    Disc,
    Square,
    Triangle,
    Plus,
}

#[derive(Clone, Copy)]
enum Background {
    Gradient { angle: f64 },
    Stripes { angle: f64, period: f64 },
    Checker { period: f64 },
    Waves { fx: f64, fy: f64, phase: f64 },
}

/// Where the object is and how it looks at one frame.
struct Pose {
    x: f64,
    y: f64,
    angle: f64,
    radius: f64,
    visible: bool,
}

type Rgb = [f64; 3];

fn colour(rng: &mut Rng) -> Rgb {
    [rng.range(0.0, 255.0), rng.range(0.0, 255.0), rng.range(0.0, 255.0)]
}

/// A colour at least 120 (Euclidean, 0..255 RGB) from `from`.
fn distinct(rng: &mut Rng, from: Rgb) -> Rgb {
    loop {
        let c = colour(rng);
        let d2: f64 = (0..3).map(|i| (c[i] - from[i]).powi(2)).sum();
        if d2 >= 120.0 * 120.0 {
            return c;
        }
    }
}

/// Renders clip `index` of `split`; the class is [`label_of`]`(index)`.
pub fn render_clip(spec: &SynthSpec, split: Split, index: usize) -> Clip {
    let label = label_of(index);
    let mut rng = Rng::at(spec.seed, &[split as u64, index as u64]);
    Clip { size: spec.size, frames: render(spec, label, &mut rng, spec.frames), label }
}

/// Renders `len` frames of class `label` with the look and timing of a
/// `spec.frames`-frame clip: longer runs carry on moving, turning and
/// flashing at the same pace, and zooms start over every `spec.frames`.
pub(super) fn render(spec: &SynthSpec, label: usize, rng: &mut Rng, len: usize) -> Vec<Vec<u8>> {
    let s = spec.size as f64;
    let n = spec.frames;

    let shape = [Shape::Disc, Shape::Square, Shape::Triangle, Shape::Plus][rng.below(4)];
    let background = match rng.below(4) {
        0 => Background::Gradient { angle: rng.range(0.0, 2.0 * PI) },
        1 => Background::Stripes { angle: rng.range(0.0, PI), period: rng.range(0.1, 0.3) * s },
        2 => Background::Checker { period: rng.range(0.1, 0.25) * s },
        _ => Background::Waves { fx: rng.range(1.0, 4.0), fy: rng.range(1.0, 4.0), phase: rng.range(0.0, 2.0 * PI) },
    };
    // The texture is kept low in contrast and the object far in colour from
    // it: with both drawn freely a small network spends its few channels on
    // the background and memorises clips instead of learning the motion.
    let bg_a = colour(rng);
    let bg_b = bg_a.map(|c| (c + rng.range(-50.0, 50.0)).clamp(0.0, 255.0));
    // Two halves of different colours and optional stripes make rotation
    // visible whatever the outline (a plain disc would hide it).
    let (fg_a, fg_b) = (distinct(rng, bg_a), distinct(rng, bg_a));
    let striped = rng.coin();
    let noise = rng.range(2.0, 8.0);

    let radius = rng.range(0.2, 0.3) * s;
    let (x0, y0) = (rng.range(0.0, s), rng.range(0.0, s));
    let angle0 = rng.range(0.0, 2.0 * PI);
    // Speeds are per frame relative to a 48-frame, 64-pixel clip, so longer
    // or larger clips keep the same look.
    let unit = s / 64.0 * 48.0 / n.max(1) as f64;
    let speed = rng.range(1.0, 1.5) * unit;
    let spin = rng.range(6.0, 10.0).to_radians() * 48.0 / n.max(1) as f64;
    let period = rng.range(6.0, 10.0);
    let phase = rng.range(0.0, period);
    let jitter = rng.range(-0.15, 0.15);
    let fast_dir = rng.below(4);

    let pose = |t: f64| -> Pose {
        let still = Pose { x: x0, y: y0, angle: angle0, radius, visible: true };
        let dir = |d: usize, v: f64| {
            let (dx, dy) = [(1.0, jitter), (-1.0, jitter), (jitter, -1.0), (jitter, 1.0)][d];
            Pose { x: x0 + dx * v * t, y: y0 + dy * v * t, ..still }
        };
        let progress = (t % n.max(2) as f64) / (n.max(2) - 1) as f64;
        match CLASSES[label] {
            "move_right" => dir(0, speed),
            "move_left" => dir(1, speed),
            "move_up" => dir(2, speed),
            "move_down" => dir(3, speed),
            "move_fast" => dir(fast_dir, speed * 2.5),
            "rotate_clockwise" => Pose { angle: angle0 + spin * t, ..still },
            "rotate_counterclockwise" => Pose { angle: angle0 - spin * t, ..still },
            "zoom_in" => Pose { radius: radius * 0.6 * (2.5f64).powf(progress), ..still },
            "zoom_out" => Pose { radius: radius * 1.5 * (2.5f64).powf(-progress), ..still },
            "flash" => Pose { visible: ((t + phase) % period) < period / 2.0, ..still },
            _ => still,
        }
    };

    let size = spec.size as usize;
    let mut frames = Vec::with_capacity(len);
    for f in 0..len {
        let p = pose(f as f64);
        let (cos, sin) = (p.angle.cos(), p.angle.sin());
        let mut data = vec![0u8; size * size * 3];
        for yi in 0..size {
            for xi in 0..size {
                let (x, y) = (xi as f64 + 0.5, yi as f64 + 0.5);
                let bg = background_at(background, x / s, y / s, s, bg_a, bg_b);
                // The object wraps around the borders, so moving clips never
                // run out of picture.
                let dx = wrap(x - p.x, s);
                let dy = wrap(y - p.y, s);
                // Image y grows downwards: a positive angle turns clockwise on screen.
                let u = (cos * dx + sin * dy) / p.radius;
                let v = (-sin * dx + cos * dy) / p.radius;
                let px = if p.visible && inside(shape, u, v) {
                    let base = if u > 0.0 { fg_a } else { fg_b };
                    let dark = if striped && ((v * 2.5).floor() as i64).rem_euclid(2) == 0 { 0.65 } else { 1.0 };
                    base.map(|c| c * dark)
                } else {
                    bg
                };
                let i = (yi * size + xi) * 3;
                for c in 0..3 {
                    let value = px[c] + rng.range(-noise, noise);
                    data[i + c] = value.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        frames.push(data);
    }
    frames
}

fn wrap(d: f64, s: f64) -> f64 {
    (d + s / 2.0).rem_euclid(s) - s / 2.0
}

fn inside(shape: Shape, u: f64, v: f64) -> bool {
    match shape {
        Shape::Disc => u * u + v * v <= 1.0,
        Shape::Square => u.abs().max(v.abs()) <= 0.8,
        Shape::Triangle => (-0.6..=0.9).contains(&v) && u.abs() <= (0.9 - v) * 0.7,
        Shape::Plus => (u.abs() < 0.3 && v.abs() < 0.95) || (v.abs() < 0.3 && u.abs() < 0.95),
    }
}

fn background_at(bg: Background, x: f64, y: f64, s: f64, a: Rgb, b: Rgb) -> Rgb {
    let w = match bg {
        Background::Gradient { angle } => (x * angle.cos() + y * angle.sin()).rem_euclid(1.0),
        Background::Stripes { angle, period } => {
            let d = (x * angle.cos() + y * angle.sin()) * s / period;
            if (d.floor() as i64).rem_euclid(2) == 0 { 0.0 } else { 1.0 }
        }
        Background::Checker { period } => {
            let (i, j) = ((x * s / period).floor() as i64, (y * s / period).floor() as i64);
            ((i + j).rem_euclid(2)) as f64
        }
        Background::Waves { fx, fy, phase } => 0.5 + 0.25 * ((2.0 * PI * fx * x + phase).sin() + (2.0 * PI * fy * y).cos()),
    };
    [0, 1, 2].map(|c| a[c] * (1.0 - w) + b[c] * w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_pixels_other_seed_other_pixels() {
        let spec = SynthSpec { size: 32, frames: 8, seed: 5 };
        let a = render_clip(&spec, Split::Train, 3);
        let b = render_clip(&spec, Split::Train, 3);
        assert_eq!(a.frames, b.frames);
        let c = render_clip(&SynthSpec { seed: 6, ..spec }, Split::Train, 3);
        assert_ne!(a.frames, c.frames);
        assert_ne!(a.frames, render_clip(&spec, Split::Val, 3).frames);
    }
}
