//! The report's figures as SVG and PNG: a small chart layer (axes, lines, scatter, heatmap
//! cells, legends) drawn on the plotters backends. The `plotters` front crate is not used: it
//! enables num-traits' `default` feature, which would rebuild burn. PNG text is rasterised
//! with ab_glyph from a TrueType font found at run time ([`Fonts::load`]); SVG text needs none.

use std::io::Write;
use std::path::{Path, PathBuf};

use ab_glyph::{Font, FontVec, PxScale, ScaleFont, point};
use anyhow::{Context, Result, anyhow, bail};
use plotters_backend::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, FontFamily,
    FontTransform,
};
use plotters_bitmap::BitMapBackend;
use plotters_svg::SVGBackend;
// CRC-32 (IEEE) for PNG chunks: the checksum the runtime's model files carry too.
use s4q_runtime::crc32;

/// Where a TrueType font is looked for when `S4Q_PLOT_FONT` is unset (Debian/Ubuntu
/// `fonts-dejavu-core`, Fedora, Arch, Homebrew, macOS).
const FONT_CANDIDATES: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/opt/homebrew/share/fonts/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// The font for PNG text, if one was found.
pub struct Fonts {
    font: Option<FontVec>,
    /// Where it came from (or why there is none), for the log.
    pub source: String,
}

impl Fonts {
    /// Loads `$S4Q_PLOT_FONT` or the first font of [`FONT_CANDIDATES`] that parses. Without
    /// one, SVGs are still written and PNGs are skipped.
    pub fn load() -> Self {
        let env = std::env::var("S4Q_PLOT_FONT").ok();
        for path in env.iter().map(String::as_str).chain(FONT_CANDIDATES) {
            if let Ok(bytes) = std::fs::read(path)
                && let Ok(font) = FontVec::try_from_vec(bytes)
            {
                return Self {
                    font: Some(font),
                    source: path.to_string(),
                };
            }
        }
        Self {
            font: None,
            source: "no TrueType font found (set S4Q_PLOT_FONT or install fonts-dejavu-core)"
                .into(),
        }
    }

    /// No font: SVG only.
    #[cfg(test)]
    pub fn none() -> Self {
        Self {
            font: None,
            source: "none".into(),
        }
    }

    fn scale(font: &FontVec, px: f64) -> PxScale {
        let em = font.units_per_em().unwrap_or(1000.0);
        PxScale::from(px as f32 * font.height_unscaled() / em)
    }

    /// Width in pixels of `text` at `px` (an estimate when there is no font).
    fn width(&self, text: &str, px: f64) -> f64 {
        match &self.font {
            Some(font) => {
                let sf = font.as_scaled(Self::scale(font, px));
                let mut w = 0.0;
                let mut prev = None;
                for c in text.chars() {
                    let id = font.glyph_id(c);
                    if let Some(p) = prev {
                        w += sf.kern(p, id);
                    }
                    w += sf.h_advance(id);
                    prev = Some(id);
                }
                w as f64
            }
            None => 0.56 * px * text.chars().count() as f64,
        }
    }
}

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    fn backend(self, alpha: f64) -> BackendColor {
        BackendColor {
            alpha,
            rgb: (self.0, self.1, self.2),
        }
    }
}

const BLACK: Rgb = Rgb(0, 0, 0);
const GREY: Rgb = Rgb(150, 150, 150);
const LIGHT: Rgb = Rgb(225, 225, 225);
const WHITE: Rgb = Rgb(255, 255, 255);

/// Distinct colours for up to 16 series.
pub const PALETTE: [Rgb; 16] = [
    Rgb(31, 119, 180),
    Rgb(255, 127, 14),
    Rgb(44, 160, 44),
    Rgb(214, 39, 40),
    Rgb(148, 103, 189),
    Rgb(140, 86, 75),
    Rgb(227, 119, 194),
    Rgb(0, 0, 128),
    Rgb(188, 189, 34),
    Rgb(23, 190, 207),
    Rgb(174, 199, 232),
    Rgb(255, 187, 120),
    Rgb(152, 223, 138),
    Rgb(255, 152, 150),
    Rgb(197, 176, 213),
    Rgb(196, 156, 148),
];

/// Viridis-like colour of `t` in [0, 1].
pub fn viridis(t: f64) -> Rgb {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    Rgb(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A stroke colour and width.
struct Stroke(BackendColor, u32);

impl BackendStyle for Stroke {
    fn color(&self) -> BackendColor {
        self.0
    }
    fn stroke_width(&self) -> u32 {
        self.1
    }
}

/// No font to rasterise PNG text with.
#[derive(Debug)]
pub struct NoFont;

impl std::fmt::Display for NoFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no font loaded for bitmap text")
    }
}

impl std::error::Error for NoFont {}

/// One piece of text: its size, colour, anchor and rotation, drawn with ab_glyph on bitmaps.
struct Label<'f> {
    font: Option<&'f FontVec>,
    px: f64,
    color: BackendColor,
    anchor: Pos,
    vertical: bool,
    bold: bool,
}

impl BackendTextStyle for Label<'_> {
    type FontError = NoFont;

    fn color(&self) -> BackendColor {
        self.color
    }

    // plotters-svg writes font-size = size / 1.24.
    fn size(&self) -> f64 {
        self.px * 1.24
    }

    fn transform(&self) -> FontTransform {
        if self.vertical {
            FontTransform::Rotate270
        } else {
            FontTransform::None
        }
    }

    fn style(&self) -> plotters_backend::FontStyle {
        if self.bold {
            plotters_backend::FontStyle::Bold
        } else {
            plotters_backend::FontStyle::Normal
        }
    }

    fn anchor(&self) -> Pos {
        self.anchor
    }

    fn family(&self) -> FontFamily<'_> {
        FontFamily::SansSerif
    }

    fn layout_box(&self, text: &str) -> Result<((i32, i32), (i32, i32)), NoFont> {
        let font = self.font.ok_or(NoFont)?;
        let sf = font.as_scaled(Fonts::scale(font, self.px));
        let mut w = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                w += sf.kern(p, id);
            }
            w += sf.h_advance(id);
            prev = Some(id);
        }
        let h = sf.ascent() - sf.descent();
        Ok(((0, 0), (w.ceil() as i32, h.ceil() as i32)))
    }

    fn draw<E, F: FnMut(i32, i32, BackendColor) -> Result<(), E>>(
        &self,
        text: &str,
        pos: BackendCoord,
        mut draw: F,
    ) -> Result<Result<(), E>, NoFont> {
        let font = self.font.ok_or(NoFont)?;
        let scale = Fonts::scale(font, self.px);
        let sf = font.as_scaled(scale);
        let mut caret = 0.0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                caret += sf.kern(p, id);
            }
            let glyph = id.with_scale_and_position(scale, point(caret, sf.ascent()));
            caret += sf.h_advance(id);
            prev = Some(id);
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            let mut result = Ok(());
            outline.draw(|x, y, coverage| {
                if result.is_ok() && coverage > 0.02 {
                    result = draw(
                        pos.0 + bounds.min.x as i32 + x as i32,
                        pos.1 + bounds.min.y as i32 + y as i32,
                        self.color.mix(coverage.min(1.0) as f64),
                    );
                }
            });
            if result.is_err() {
                return Ok(result);
            }
        }
        Ok(Ok(()))
    }
}

/// A backend plus the font, with drawing helpers that return `anyhow` errors.
pub struct Canvas<'a, B: DrawingBackend> {
    backend: B,
    fonts: &'a Fonts,
}

/// Horizontal anchor of text.
#[derive(Debug, Clone, Copy)]
pub enum Align {
    /// Text starts at the point.
    Left,
    /// Text is centred on the point.
    Center,
    /// Text ends at the point.
    Right,
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e}")
}

impl<B: DrawingBackend> Canvas<'_, B> {
    fn size(&self) -> (f64, f64) {
        let (w, h) = self.backend.get_size();
        (w as f64, h as f64)
    }

    fn rect(
        &mut self,
        (x0, y0): (f64, f64),
        (x1, y1): (f64, f64),
        c: Rgb,
        fill: bool,
    ) -> Result<()> {
        self.backend
            .draw_rect(
                (x0.round() as i32, y0.round() as i32),
                (x1.round() as i32, y1.round() as i32),
                &Stroke(c.backend(1.0), 1),
                fill,
            )
            .map_err(err)
    }

    fn line(&mut self, a: (f64, f64), b: (f64, f64), c: Rgb, width: u32) -> Result<()> {
        self.polyline(&[a, b], c, width)
    }

    fn polyline(&mut self, pts: &[(f64, f64)], c: Rgb, width: u32) -> Result<()> {
        if pts.len() < 2 {
            return Ok(());
        }
        let pts: Vec<BackendCoord> = pts
            .iter()
            .map(|&(x, y)| (x.round() as i32, y.round() as i32))
            .collect();
        self.backend
            .draw_path(pts, &Stroke(c.backend(1.0), width))
            .map_err(err)
    }

    fn dot(&mut self, (x, y): (f64, f64), r: u32, c: Rgb, fill: bool) -> Result<()> {
        self.backend
            .draw_circle(
                (x.round() as i32, y.round() as i32),
                r,
                &Stroke(c.backend(1.0), 2),
                fill,
            )
            .map_err(err)
    }

    #[allow(clippy::too_many_arguments)]
    fn text_styled(
        &mut self,
        s: &str,
        (x, y): (f64, f64),
        px: f64,
        align: Align,
        c: Rgb,
        vertical: bool,
        bold: bool,
    ) -> Result<()> {
        let h_pos = match align {
            Align::Left => HPos::Left,
            Align::Center => HPos::Center,
            Align::Right => HPos::Right,
        };
        let label = Label {
            font: self.fonts.font.as_ref(),
            px,
            color: c.backend(1.0),
            anchor: Pos::new(h_pos, VPos::Center),
            vertical,
            bold,
        };
        self.backend
            .draw_text(s, &label, (x.round() as i32, y.round() as i32))
            .map_err(err)
    }

    fn text(&mut self, s: &str, at: (f64, f64), px: f64, align: Align) -> Result<()> {
        self.text_styled(s, at, px, align, BLACK, false, false)
    }
}

/// A figure that can be drawn on any plotters backend.
pub trait Chart {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the whole figure.
    fn draw<B: DrawingBackend>(&self, c: &mut Canvas<'_, B>) -> Result<()>;
}

/// Writes `<stem>.svg` and, when a font is available, `<stem>.png`; returns the files written.
pub fn save<C: Chart>(chart: &C, stem: &Path, fonts: &Fonts) -> Result<Vec<PathBuf>> {
    let (w, h) = chart.size();
    let mut written = Vec::new();
    let mut svg = String::new();
    {
        let mut canvas = Canvas {
            backend: SVGBackend::with_string(&mut svg, (w, h)),
            fonts,
        };
        chart.draw(&mut canvas)?;
        canvas.backend.present().map_err(err)?;
    }
    let svg_path = stem.with_extension("svg");
    crate::checkpoint::write_atomic(&svg_path, svg.as_bytes())?;
    written.push(svg_path);
    if fonts.font.is_some() {
        let mut rgb = vec![255u8; (w * h * 3) as usize];
        {
            let mut canvas = Canvas {
                backend: BitMapBackend::with_buffer(&mut rgb, (w, h)),
                fonts,
            };
            chart.draw(&mut canvas)?;
            canvas.backend.present().map_err(err)?;
        }
        let png_path = stem.with_extension("png");
        crate::checkpoint::write_atomic(&png_path, &encode_png(&rgb, w, h)?)?;
        written.push(png_path);
    }
    Ok(written)
}

/// Encodes 8-bit RGB pixels as a PNG (one IDAT chunk, no filtering).
pub fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let stride = w as usize * 3;
    if rgb.len() != stride * h as usize {
        bail!("PNG buffer of {} bytes is not {w}x{h} RGB", rgb.len());
    }
    let mut raw = Vec::with_capacity((stride + 1) * h as usize);
    for row in rgb.chunks(stride.max(1)) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).context("compressing PNG data")?;
    let idat = z.finish().context("compressing PNG data")?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    for (kind, data) in [
        (b"IHDR", &ihdr[..]),
        (b"IDAT", &idat[..]),
        (b"IEND", &[][..]),
    ] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    Ok(out)
}

/// Tick positions over `[lo, hi]` at a 1-2-5 step giving about `n` ticks.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater)
        || !lo.is_finite()
        || !hi.is_finite()
    {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// A plot area with linear axes mapping data to pixels.
struct Axes {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    xr: (f64, f64),
    yr: (f64, f64),
}

impl Axes {
    fn px(&self, x: f64, y: f64) -> (f64, f64) {
        let fx = (x - self.xr.0) / (self.xr.1 - self.xr.0);
        let fy = (y - self.yr.0) / (self.yr.1 - self.yr.0);
        (
            self.x0 + fx * (self.x1 - self.x0),
            self.y1 - fy * (self.y1 - self.y0),
        )
    }

    /// Frame, grid, ticks and axis labels.
    fn draw<B: DrawingBackend>(
        &self,
        c: &mut Canvas<'_, B>,
        xticks: &[(f64, String)],
        yticks: &[(f64, String)],
        xlabel: &str,
        ylabel: &str,
    ) -> Result<()> {
        for (y, label) in yticks {
            let (_, py) = self.px(self.xr.0, *y);
            c.line((self.x0, py), (self.x1, py), LIGHT, 1)?;
            c.text(label, (self.x0 - 6.0, py), 12.0, Align::Right)?;
        }
        for (x, label) in xticks {
            let (px, _) = self.px(*x, self.yr.0);
            c.line((px, self.y0), (px, self.y1), LIGHT, 1)?;
            c.text(label, (px, self.y1 + 14.0), 12.0, Align::Center)?;
        }
        c.rect((self.x0, self.y0), (self.x1, self.y1), BLACK, false)?;
        c.text(
            xlabel,
            ((self.x0 + self.x1) / 2.0, self.y1 + 36.0),
            14.0,
            Align::Center,
        )?;
        c.text_styled(
            ylabel,
            (self.x0 - 48.0, (self.y0 + self.y1) / 2.0),
            14.0,
            Align::Center,
            BLACK,
            true,
            false,
        )
    }
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mark {
    Line,
    Thick,
    Dot,
}

fn draw_legend<B: DrawingBackend>(
    c: &mut Canvas<'_, B>,
    (x, y): (f64, f64),
    entries: &[(String, Rgb, Mark)],
) -> Result<()> {
    for (i, (label, color, mark)) in entries.iter().enumerate() {
        let yy = y + i as f64 * 18.0;
        match mark {
            Mark::Dot => c.dot((x + 11.0, yy), 4, *color, true)?,
            Mark::Line => c.line((x, yy), (x + 22.0, yy), *color, 2)?,
            Mark::Thick => c.line((x, yy), (x + 22.0, yy), *color, 3)?,
        }
        c.text(label, (x + 28.0, yy), 12.0, Align::Left)?;
    }
    Ok(())
}

/// One line of a [`LineChart`].
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points (x, y), drawn in order.
    pub points: Vec<(f64, f64)>,
    /// Drawn thick and black (e.g. the whole-model sweep).
    pub emphasis: bool,
}

/// Accuracy against an ordinal x axis (bit widths), one line per series.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X values shown, in display order; series x values must be among them.
    pub x_values: Vec<f64>,
    /// The lines.
    pub series: Vec<Series>,
    /// A horizontal reference line (label, y), e.g. the float model.
    pub reference: Option<(String, f64)>,
}

impl Chart for LineChart {
    fn size(&self) -> (u32, u32) {
        (1000, 600)
    }

    fn draw<B: DrawingBackend>(&self, c: &mut Canvas<'_, B>) -> Result<()> {
        let (w, h) = c.size();
        c.rect((0.0, 0.0), (w, h), WHITE, true)?;
        c.text_styled(
            &self.title,
            (w / 2.0, 22.0),
            16.0,
            Align::Center,
            BLACK,
            false,
            true,
        )?;
        // Ordinal x: the i-th value at position i.
        let n = self.x_values.len().max(1) as f64;
        let axes = Axes {
            x0: 80.0,
            y0: 50.0,
            x1: w - 260.0,
            y1: h - 70.0,
            xr: (-0.5, n - 0.5),
            yr: (0.0, 100.0),
        };
        let pos = |x: f64| self.x_values.iter().position(|v| *v == x).map(|i| i as f64);
        let xticks: Vec<(f64, String)> = self
            .x_values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64, format!("{v}")))
            .collect();
        let yticks: Vec<(f64, String)> = nice_ticks(0.0, 100.0, 5)
            .into_iter()
            .map(|v| (v, format!("{v:.0}")))
            .collect();
        axes.draw(c, &xticks, &yticks, &self.x_label, &self.y_label)?;
        let mut legend = Vec::new();
        if let Some((label, y)) = &self.reference {
            let (_, py) = axes.px(0.0, *y);
            c.line((axes.x0, py), (axes.x1, py), GREY, 2)?;
            legend.push((label.clone(), GREY, Mark::Line));
        }
        let mut k = 0;
        for s in &self.series {
            let color = if s.emphasis {
                BLACK
            } else {
                k += 1;
                PALETTE[(k - 1) % PALETTE.len()]
            };
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter_map(|&(x, y)| pos(x).map(|i| axes.px(i, y)))
                .collect();
            c.polyline(&pts, color, if s.emphasis { 3 } else { 2 })?;
            for p in &pts {
                c.dot(*p, 3, color, true)?;
            }
            let mark = if s.emphasis { Mark::Thick } else { Mark::Line };
            legend.push((s.label.clone(), color, mark));
        }
        draw_legend(c, (axes.x1 + 20.0, axes.y0 + 6.0), &legend)
    }
}

/// One grid of a [`Heatmap`] (e.g. one QAT parameterization).
#[derive(Debug, Clone)]
pub struct HeatPanel {
    /// Panel title.
    pub title: String,
    /// Row labels, top to bottom.
    pub rows: Vec<String>,
    /// Column labels, left to right.
    pub cols: Vec<String>,
    /// `values[row][col]`, accuracy in %; `None` is drawn as an empty cell.
    pub values: Vec<Vec<Option<f64>>>,
}

/// Rows of panels of accuracy cells coloured on one 0-100 scale.
#[derive(Debug, Clone)]
pub struct Heatmap {
    /// Title.
    pub title: String,
    /// Column axis label.
    pub x_label: String,
    /// Row axis label.
    pub y_label: String,
    /// Panel rows (e.g. ours, the paper's), each a label and its panels.
    pub panel_rows: Vec<(String, Vec<HeatPanel>)>,
}

impl Heatmap {
    fn columns(&self) -> usize {
        self.panel_rows
            .iter()
            .map(|r| r.1.len())
            .max()
            .unwrap_or(1)
            .max(1)
    }
}

impl Chart for Heatmap {
    fn size(&self) -> (u32, u32) {
        let w = 110 + self.columns() as u32 * 250 + 90;
        let h = 60 + self.panel_rows.len().max(1) as u32 * 290;
        (w, h)
    }

    fn draw<B: DrawingBackend>(&self, c: &mut Canvas<'_, B>) -> Result<()> {
        let (w, h) = c.size();
        c.rect((0.0, 0.0), (w, h), WHITE, true)?;
        c.text_styled(
            &self.title,
            (w / 2.0, 22.0),
            16.0,
            Align::Center,
            BLACK,
            false,
            true,
        )?;
        let cell = 46.0;
        for (r, (row_label, panels)) in self.panel_rows.iter().enumerate() {
            let top = 60.0 + r as f64 * 290.0;
            c.text_styled(
                row_label,
                (22.0, top + 130.0),
                14.0,
                Align::Center,
                BLACK,
                true,
                true,
            )?;
            for (p, panel) in panels.iter().enumerate() {
                let left = 110.0 + p as f64 * 250.0;
                c.text_styled(
                    &panel.title,
                    (left + cell * panel.cols.len() as f64 / 2.0, top + 12.0),
                    14.0,
                    Align::Center,
                    BLACK,
                    false,
                    true,
                )?;
                let gy = top + 30.0;
                for (i, row) in panel.rows.iter().enumerate() {
                    let y = gy + i as f64 * cell;
                    c.text(row, (left - 6.0, y + cell / 2.0), 12.0, Align::Right)?;
                    for (j, _) in panel.cols.iter().enumerate() {
                        let x = left + j as f64 * cell;
                        let v = panel
                            .values
                            .get(i)
                            .and_then(|r| r.get(j))
                            .copied()
                            .flatten();
                        match v {
                            Some(v) => {
                                let color = viridis(v / 100.0);
                                c.rect((x, y), (x + cell, y + cell), color, true)?;
                                let lum = 0.299 * color.0 as f64
                                    + 0.587 * color.1 as f64
                                    + 0.114 * color.2 as f64;
                                let ink = if lum > 140.0 { BLACK } else { WHITE };
                                c.text_styled(
                                    &format!("{v:.1}"),
                                    (x + cell / 2.0, y + cell / 2.0),
                                    12.0,
                                    Align::Center,
                                    ink,
                                    false,
                                    false,
                                )?;
                            }
                            None => c.rect((x, y), (x + cell, y + cell), LIGHT, true)?,
                        }
                        c.rect((x, y), (x + cell, y + cell), WHITE, false)?;
                    }
                }
                let bottom = gy + panel.rows.len() as f64 * cell;
                for (j, col) in panel.cols.iter().enumerate() {
                    c.text(
                        col,
                        (left + (j as f64 + 0.5) * cell, bottom + 12.0),
                        12.0,
                        Align::Center,
                    )?;
                }
                c.text(
                    &self.x_label,
                    (left + cell * panel.cols.len() as f64 / 2.0, bottom + 32.0),
                    12.0,
                    Align::Center,
                )?;
                if p == 0 {
                    c.text_styled(
                        &self.y_label,
                        (left - 36.0, gy + cell * panel.rows.len() as f64 / 2.0),
                        12.0,
                        Align::Center,
                        BLACK,
                        true,
                        false,
                    )?;
                }
            }
        }
        // Colour bar.
        let (bx, by, bh) = (w - 60.0, 70.0, h - 140.0);
        let steps = 50;
        for s in 0..steps {
            let t = s as f64 / steps as f64;
            let y = by + bh * (1.0 - t) - bh / steps as f64;
            c.rect(
                (bx, y),
                (bx + 16.0, y + bh / steps as f64 + 1.0),
                viridis(t),
                true,
            )?;
        }
        for v in [0.0, 25.0, 50.0, 75.0, 100.0] {
            c.text(
                &format!("{v:.0}"),
                (bx + 20.0, by + bh * (1.0 - v / 100.0)),
                11.0,
                Align::Left,
            )?;
        }
        c.text("acc. %", (bx + 8.0, by - 12.0), 11.0, Align::Center)
    }
}

/// One configuration in a [`Pareto`] plot.
#[derive(Debug, Clone)]
pub struct ParetoPoint {
    /// Short label drawn beside frontier points.
    pub label: String,
    /// Memory (KB).
    pub x: f64,
    /// Accuracy (%).
    pub y: f64,
    /// Std over seeds, drawn as an error bar.
    pub yerr: Option<f64>,
    /// Index into [`Pareto::groups`].
    pub group: usize,
}

/// Accuracy against memory, with the Pareto frontier (the configurations no other one beats
/// on both axes).
#[derive(Debug, Clone)]
pub struct Pareto {
    /// Title.
    pub title: String,
    /// Group names (legend), e.g. PTQ and each QAT parameterization.
    pub groups: Vec<String>,
    /// The configurations.
    pub points: Vec<ParetoPoint>,
    /// The FP32 model: (memory KB, accuracy).
    pub reference: Option<(f64, f64)>,
}

/// Indices of the points on the frontier (smaller memory and higher accuracy are better),
/// sorted by memory.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[b].1.total_cmp(&points[a].1))
    });
    let mut best = f64::NEG_INFINITY;
    let mut front = Vec::new();
    for i in order {
        if points[i].1 > best {
            best = points[i].1;
            front.push(i);
        }
    }
    front
}

impl Chart for Pareto {
    fn size(&self) -> (u32, u32) {
        (1000, 620)
    }

    fn draw<B: DrawingBackend>(&self, c: &mut Canvas<'_, B>) -> Result<()> {
        let (w, h) = c.size();
        c.rect((0.0, 0.0), (w, h), WHITE, true)?;
        c.text_styled(
            &self.title,
            (w / 2.0, 22.0),
            16.0,
            Align::Center,
            BLACK,
            false,
            true,
        )?;
        // The FP32 model is a reference line, not a point: at 4-8x the memory of the quantized
        // ones it would squeeze them into a corner.
        let xs = self.points.iter().map(|p| p.x);
        let (mut lo, mut hi) = xs.fold((f64::INFINITY, 0.0f64), |(l, h), x| (l.min(x), h.max(x)));
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = ((hi - lo) * 0.08).max(0.5);
        let axes = Axes {
            x0: 80.0,
            y0: 50.0,
            x1: w - 230.0,
            y1: h - 70.0,
            xr: ((lo - pad).max(0.0), hi + pad),
            yr: (0.0, 100.0),
        };
        let xticks: Vec<(f64, String)> = nice_ticks(axes.xr.0, axes.xr.1, 6)
            .into_iter()
            .map(|v| (v, format!("{v}")))
            .collect();
        let yticks: Vec<(f64, String)> = nice_ticks(0.0, 100.0, 5)
            .into_iter()
            .map(|v| (v, format!("{v:.0}")))
            .collect();
        axes.draw(
            c,
            &xticks,
            &yticks,
            "model memory (KB, our counting)",
            "test accuracy (%)",
        )?;
        let coords: Vec<(f64, f64)> = self.points.iter().map(|p| (p.x, p.y)).collect();
        let front = pareto_front(&coords);
        let line: Vec<(f64, f64)> = front
            .iter()
            .map(|&i| axes.px(coords[i].0, coords[i].1))
            .collect();
        c.polyline(&line, BLACK, 1)?;
        let mut legend = Vec::new();
        for (g, name) in self.groups.iter().enumerate() {
            legend.push((name.clone(), PALETTE[g % PALETTE.len()], Mark::Dot));
        }
        for p in &self.points {
            let color = PALETTE[p.group % PALETTE.len()];
            let at = axes.px(p.x, p.y);
            if let Some(e) = p.yerr.filter(|e| *e > 0.0) {
                let (_, top) = axes.px(p.x, (p.y + e).min(100.0));
                let (_, bottom) = axes.px(p.x, (p.y - e).max(0.0));
                c.line((at.0, top), (at.0, bottom), color, 1)?;
            }
            c.dot(at, 4, color, true)?;
        }
        // Frontier labels, best accuracy first, skipping any that would overlap one placed.
        let mut placed: Vec<(f64, f64, f64, f64)> = Vec::new();
        let mut order = front.clone();
        order.sort_by(|&a, &b| self.points[b].y.total_cmp(&self.points[a].y));
        for i in order {
            let p = &self.points[i];
            let at = axes.px(p.x, p.y);
            let width = c.fonts.width(&p.label, 11.0);
            // Labels that would cross the frame go on the left of their point.
            let left = at.0 + 7.0 + width > axes.x1;
            let x0 = if left { at.0 - 7.0 - width } else { at.0 + 7.0 };
            let rect = (x0, at.1 - 16.0, x0 + width, at.1 - 2.0);
            let overlaps = placed
                .iter()
                .any(|r| rect.0 < r.2 && r.0 < rect.2 && rect.1 < r.3 && r.1 < rect.3);
            if overlaps {
                continue;
            }
            placed.push(rect);
            let align = if left { Align::Right } else { Align::Left };
            let x = if left { at.0 - 7.0 } else { at.0 + 7.0 };
            c.text(&p.label, (x, at.1 - 9.0), 11.0, align)?;
        }
        if let Some((kb, acc)) = self.reference {
            let (_, py) = axes.px(axes.xr.0, acc);
            c.line((axes.x0, py), (axes.x1, py), GREY, 2)?;
            legend.push((format!("FP32: {acc:.1}% at {kb:.1} KB"), GREY, Mark::Line));
        }
        legend.push(("Pareto frontier".into(), BLACK, Mark::Line));
        draw_legend(c, (axes.x1 + 20.0, axes.y0 + 6.0), &legend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> LineChart {
        LineChart {
            title: "PTQ <sensitivity> & co".into(),
            x_label: "bits".into(),
            y_label: "acc".into(),
            x_values: vec![8.0, 6.0, 4.0],
            series: vec![
                Series {
                    label: "a_bar".into(),
                    points: vec![(8.0, 80.0), (6.0, 20.0), (4.0, 10.0)],
                    emphasis: false,
                },
                Series {
                    label: "whole model".into(),
                    points: vec![(8.0, 60.0), (4.0, 10.0)],
                    emphasis: true,
                },
            ],
            reference: Some(("float".into(), 96.0)),
        }
    }

    #[test]
    fn png_encoder_writes_valid_chunks() {
        let (w, h) = (3u32, 2u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| i as u8).collect();
        let png = encode_png(&rgb, w, h).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IEND with its well-known CRC closes the file.
        assert_eq!(&png[png.len() - 12..], b"\0\0\0\0IEND\xae\x42\x60\x82");
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        // The IDAT payload inflates to filter byte 0 + each row.
        let idat_len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&png[41..41 + idat_len])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), (w as usize * 3 + 1) * h as usize);
        assert_eq!(&raw[1..10], &rgb[..9]);
        assert!(encode_png(&rgb, 4, 2).is_err());
    }

    #[test]
    fn svg_has_escaped_labels_and_png_has_ink() {
        let dir = std::env::temp_dir().join(format!("s4q-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fonts = Fonts::load();
        let files = save(&sample(), &dir.join("chart"), &fonts).unwrap();
        let svg = std::fs::read_to_string(dir.join("chart.svg")).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("PTQ &lt;sensitivity&gt; &amp; co"));
        assert!(svg.contains("whole model"));
        if fonts.font.is_some() {
            assert_eq!(files.len(), 2);
            let png = std::fs::read(dir.join("chart.png")).unwrap();
            assert_eq!(&png[16..24], &[0, 0, 3, 0xe8, 0, 0, 2, 0x58]); // 1000 x 600
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn text_is_rasterised_where_it_is_drawn() {
        let fonts = Fonts::load();
        if fonts.font.is_none() {
            return; // no TrueType font on this machine: PNG text cannot be tested
        }
        let (w, h) = (200u32, 60u32);
        let mut rgb = vec![255u8; (w * h * 3) as usize];
        {
            let mut c = Canvas {
                backend: BitMapBackend::with_buffer(&mut rgb, (w, h)),
                fonts: &fonts,
            };
            c.text("Accuracy", (10.0, 30.0), 20.0, Align::Left).unwrap();
            c.backend.present().unwrap();
        }
        let dark = |x0: u32, x1: u32| {
            (0..h)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| rgb[((y * w + x) * 3) as usize] < 128)
                .count()
        };
        assert!(dark(10, 100) > 50, "no text pixels where the label starts");
        assert_eq!(dark(160, 200), 0, "ink beyond the label's width");
        let width = fonts.width("Accuracy", 20.0);
        assert!(width > 60.0 && width < 140.0, "{width}");
    }

    #[test]
    fn frontier_keeps_only_undominated_points() {
        let pts = [
            (10.0, 50.0),
            (5.0, 60.0),
            (20.0, 90.0),
            (15.0, 55.0),
            (25.0, 89.0),
        ];
        assert_eq!(pareto_front(&pts), vec![1, 2]);
        assert_eq!(
            nice_ticks(0.0, 100.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(viridis(0.0), Rgb(68, 1, 84));
        assert_eq!(viridis(1.0), Rgb(253, 231, 37));
    }
}
