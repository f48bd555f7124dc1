//! A small page-layout layer over krilla: A4 pages, two embedded fonts, text measured with the
//! fonts' own advances (so amounts align right and long text wraps), rules, boxes and QR codes.
//! Positions are in points from the top left.

use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::num::NormalizedF32;
use krilla::paint::{Fill, FillRule, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use skrifa::MetadataProvider;
use skrifa::instance::{LocationRef, Size};

/// The fonts, shipped inside the binary (Liberation Sans, SIL OFL 1.1; see assets/fonts).
static REGULAR: &[u8] = include_bytes!("../../assets/fonts/LiberationSans-Regular.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/LiberationSans-Bold.ttf");

pub const A4_WIDTH: f32 = 595.28;
pub const A4_HEIGHT: f32 = 841.89;
pub const MARGIN: f32 = 56.0;

#[derive(Clone)]
pub struct Fonts {
    regular: Font,
    bold: Font,
}

impl Fonts {
    pub fn load() -> Option<Fonts> {
        Some(Fonts { regular: Font::new(REGULAR.to_vec().into(), 0)?, bold: Font::new(BOLD.to_vec().into(), 0)? })
    }
}

/// Regular or bold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Regular,
    Bold,
}

/// The width of `text` at `size` points.
pub fn width(text: &str, weight: Weight, size: f32) -> f32 {
    let data = if weight == Weight::Bold { BOLD } else { REGULAR };
    let Ok(font) = skrifa::FontRef::new(data) else { return 0.0 };
    let charmap = font.charmap();
    let metrics = font.glyph_metrics(Size::new(size), LocationRef::default());
    text.chars().map(|c| charmap.map(c).and_then(|g| metrics.advance_width(g)).unwrap_or(size * 0.5)).sum()
}

/// Breaks `text` into lines no wider than `max` points.
pub fn wrap(text: &str, weight: Weight, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let candidate = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
            if width(&candidate, weight, size) > max && !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                line = word.to_owned();
            } else {
                line = candidate;
            }
        }
        lines.push(line);
    }
    lines
}

/// `text` in at most `max_lines` lines no wider than `max` points: wrapped at spaces, a word
/// wider than a line broken inside, and the last line cut with "…" if the text does not fit.
pub fn fit(text: &str, weight: Weight, size: f32, max: f32, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in wrap(text, weight, size, max) {
        if width(&line, weight, size) <= max {
            lines.push(line);
            continue;
        }
        // One word wider than the line: break it where it no longer fits.
        let mut part = String::new();
        for ch in line.chars() {
            part.push(ch);
            if width(&part, weight, size) > max && part.chars().count() > 1 {
                part.pop();
                lines.push(std::mem::take(&mut part));
                part.push(ch);
            }
        }
        lines.push(part);
    }
    if lines.len() > max_lines.max(1) {
        lines.truncate(max_lines.max(1));
        if let Some(last) = lines.last_mut() {
            while !last.is_empty() && width(&format!("{last}…"), weight, size) > max {
                last.pop();
            }
            last.push('…');
        }
    }
    lines
}

fn fill(r: u8, g: u8, b: u8) -> Fill {
    Fill { paint: rgb::Color::new(r, g, b).into(), opacity: NormalizedF32::ONE, rule: FillRule::NonZero }
}

/// Draws on one page.
pub struct Canvas<'a, 'b> {
    pub surface: &'a mut Surface<'b>,
    fonts: &'a Fonts,
}

impl<'a, 'b> Canvas<'a, 'b> {
    pub fn new(surface: &'a mut Surface<'b>, fonts: &'a Fonts) -> Self {
        Canvas { surface, fonts }
    }

    /// Text with its baseline at `y`, starting at `x`.
    pub fn text(&mut self, x: f32, y: f32, text: &str, weight: Weight, size: f32) {
        if text.is_empty() {
            return;
        }
        let font = if weight == Weight::Bold { self.fonts.bold.clone() } else { self.fonts.regular.clone() };
        self.surface.set_fill(Some(fill(26, 26, 26)));
        self.surface.draw_text(Point::from_xy(x, y), font, size, text, false, TextDirection::Auto);
    }

    /// Text ending at `right`.
    pub fn text_right(&mut self, right: f32, y: f32, text: &str, weight: Weight, size: f32) {
        let w = width(text, weight, size);
        self.text(right - w, y, text, weight, size);
    }

    /// Wrapped text from `y` on; returns the baseline after the last line.
    pub fn paragraph(&mut self, x: f32, y: f32, max: f32, text: &str, weight: Weight, size: f32) -> f32 {
        let mut y = y;
        for line in wrap(text, weight, size, max) {
            self.text(x, y, &line, weight, size);
            y += size * 1.35;
        }
        y
    }

    /// A horizontal rule.
    pub fn rule(&mut self, x1: f32, x2: f32, y: f32) {
        let mut pb = PathBuilder::new();
        pb.move_to(x1, y);
        pb.line_to(x2, y);
        if let Some(path) = pb.finish() {
            self.surface.set_fill(None);
            self.surface.set_stroke(Some(Stroke {
                paint: rgb::Color::new(160, 160, 160).into(),
                width: 0.6,
                ..Default::default()
            }));
            self.surface.draw_path(&path);
            self.surface.set_stroke(None);
        }
    }

    /// A light box behind a block.
    pub fn shade(&mut self, x: f32, y: f32, w: f32, h: f32) {
        if let Some(rect) = Rect::from_xywh(x, y, w, h) {
            let mut pb = PathBuilder::new();
            pb.push_rect(rect);
            if let Some(path) = pb.finish() {
                self.surface.set_stroke(None);
                self.surface.set_fill(Some(fill(242, 244, 247)));
                self.surface.draw_path(&path);
            }
        }
    }

    /// A QR code of `modules` (row by row, `width` a side) in a square of `size` at (x, y), with
    /// the quiet zone of four modules the standard asks for inside that square.
    pub fn qr(&mut self, x: f32, y: f32, size: f32, modules: &[bool], width: usize) {
        let side = (width + 8) as f32;
        let m = size / side;
        let mut pb = PathBuilder::new();
        for (i, dark) in modules.iter().enumerate() {
            if *dark {
                let (row, col) = ((i / width) as f32, (i % width) as f32);
                if let Some(r) = Rect::from_xywh(x + (col + 4.0) * m, y + (row + 4.0) * m, m, m) {
                    pb.push_rect(r);
                }
            }
        }
        if let Some(path) = pb.finish() {
            self.surface.set_stroke(None);
            self.surface.set_fill(Some(fill(0, 0, 0)));
            self.surface.draw_path(&path);
        }
    }
}
