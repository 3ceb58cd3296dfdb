//! Terminal output: aligned tables, colour only where wanted, human ages.

use std::io::Write;

use anstyle::{AnsiColor, Style};
use chrono::{DateTime, Utc};

use crate::thread::ThreadStatus;

pub const BOLD: Style = Style::new().bold();
pub const DIM: Style = Style::new().dimmed();
pub const GREEN: Style = AnsiColor::Green.on_default();
pub const RED: Style = AnsiColor::Red.on_default().bold();
pub const YELLOW: Style = AnsiColor::Yellow.on_default();
pub const BLUE: Style = AnsiColor::Blue.on_default();

pub fn status_style(status: ThreadStatus) -> Style {
    match status {
        ThreadStatus::Active => GREEN,
        ThreadStatus::Failed => RED,
        ThreadStatus::Creating | ThreadStatus::Cleaning => YELLOW,
        ThreadStatus::Merged => BLUE,
        ThreadStatus::Abandoned | ThreadStatus::Removed => DIM,
    }
}

/// A cell: its text and an optional style (applied without affecting width).
pub struct Cell {
    pub text: String,
    pub style: Style,
}

impl<T: Into<String>> From<T> for Cell {
    fn from(text: T) -> Cell {
        Cell { text: text.into(), style: Style::new() }
    }
}

pub fn styled(text: impl Into<String>, style: Style) -> Cell {
    Cell { text: text.into(), style }
}

/// Print rows under a bold header, columns separated by three spaces, the
/// way `docker ps` does. The last column is not padded.
pub fn print_table(header: &[&str], rows: &[Vec<Cell>]) {
    let widths = column_widths(header, rows, &[]);
    let mut out = anstream::stdout().lock();
    let _ = write_header(&mut out, header, &widths);
    for row in rows {
        let _ = write_row(&mut out, row, &widths);
    }
}

/// The width of each column: its widest cell or header, at least `min[i]`.
pub fn column_widths(header: &[&str], rows: &[Vec<Cell>], min: &[usize]) -> Vec<usize> {
    let mut widths: Vec<usize> = header.iter().enumerate().map(|(i, h)| h.chars().count().max(min.get(i).copied().unwrap_or(0))).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.text.chars().count());
        }
    }
    widths
}

/// The bold header line of a table with these column widths.
pub fn write_header(out: &mut dyn Write, header: &[&str], widths: &[usize]) -> std::io::Result<()> {
    let head: Vec<Cell> = header.iter().map(|h| styled(*h, BOLD)).collect();
    write_row(out, &head, widths)
}

/// One line of a table with these column widths (for tables printed as
/// their rows arrive; a wider cell pushes the rest of its line along).
pub fn write_row(out: &mut dyn Write, cells: &[Cell], widths: &[usize]) -> std::io::Result<()> {
    let last = cells.len().saturating_sub(1);
    for (i, cell) in cells.iter().enumerate() {
        let pad = if i == last { 0 } else { widths[i].saturating_sub(cell.text.chars().count()) + 3 };
        write!(out, "{}{}{}{}", cell.style.render(), cell.text, cell.style.render_reset(), " ".repeat(pad))?;
    }
    writeln!(out)
}

/// "45s", "3m", "2h", "5d".
pub fn age(since: DateTime<Utc>) -> String {
    let secs = (Utc::now() - since).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) {
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}
