//! Text rendering for the ops CLI: aligned tables, percentages, stage progress bars.
//!
//! Pure functions from values to `String`; printing happens in [`emit`]. Tables are rendered
//! by hand (columns padded to their widest cell, two spaces apart, no trailing blanks) because
//! that is all the CLI needs and it keeps a table crate out of the server's dependencies.
//! Every cell is cleaned of control characters, so text stored on the server (a reason, a
//! flag description) cannot move the cursor or recolour the operator's terminal.

use serde_json::Value;
use std::io::Write;

/// Writes `text` to stdout. A closed pipe (`rollgate flags list | head -1`) is not an error
/// worth reporting, so write failures are returned for callers that stream and ignored by
/// the others.
pub fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// `value` as indented JSON, for `--json`.
pub fn json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// A table of text cells.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are blank, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.iter().map(|c| clean(c)).collect();
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, one line per row, columns aligned.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut text = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - width(cell)));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// Display width, counting one column per character (the CLI's own glyphs are all narrow).
fn width(text: &str) -> usize {
    text.chars().count()
}

/// `text` on one line with control characters (newlines, escapes) replaced by spaces.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A percentage without needless decimals: `25%`, `12.5%`, `0.001%`.
pub fn percent(value: f64) -> String {
    format!("{}%", number(value))
}

/// A number with at most three decimals and none needless: `25`, `12.5`, `0.001`.
pub fn number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A JSON number as a percentage, `-` when absent.
pub fn percent_of(value: &Value) -> String {
    value.as_f64().map_or_else(|| "-".to_owned(), percent)
}

/// A stage progress bar: one box per stage, filled for stages reached, then the current
/// percentage: `[■■■□□] 25%`.
pub fn progress_bar(stages: usize, reached: usize, percentage: f64) -> String {
    let reached = reached.min(stages);
    format!(
        "[{}{}] {}",
        "■".repeat(reached),
        "□".repeat(stages - reached),
        percent(percentage)
    )
}

/// A JSON string field, or `-`.
pub fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// `s` shortened to `max` characters with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_blanks() {
        let mut t = Table::new(&["KEY", "ROLLOUT"]);
        t.row(vec!["qr-ordering".into(), "25%".into()]);
        t.row(vec!["a".into()]);
        assert_eq!(t.render(), "KEY          ROLLOUT\nqr-ordering  25%\na\n");
    }

    #[test]
    fn cells_cannot_carry_control_characters() {
        let mut t = Table::new(&["REASON"]);
        t.row(vec!["two\nlines\x1b[31m".into()]);
        assert_eq!(t.render(), "REASON\ntwo lines [31m\n");
    }

    #[test]
    fn percentages_drop_needless_decimals() {
        assert_eq!(percent(25.0), "25%");
        assert_eq!(percent(12.5), "12.5%");
        assert_eq!(percent(0.001), "0.001%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(100.0), "100%");
    }

    #[test]
    fn progress_bars_fill_reached_stages() {
        assert_eq!(progress_bar(5, 3, 25.0), "[■■■□□] 25%");
        assert_eq!(progress_bar(2, 0, 0.0), "[□□] 0%");
        assert_eq!(progress_bar(2, 9, 100.0), "[■■] 100%");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
