//! Text rendering for the ops CLI: the output formats (`--output table|json|yaml`), aligned
//! tables, percentages, stage progress bars, and colour.
//!
//! Pure functions from values to `String`; printing happens in [`emit`]. JSON and YAML print
//! the server's document unchanged, so `--output yaml` parses back to the same document as
//! `--output json`. Colour is an opt-in of the table renderer ([`Table::render_with`]) and is
//! only turned on by the caller when [`stdout_wants_colour`] says so: stdout is a terminal and
//! `NO_COLOR` is unset or empty. Piped or redirected output never carries escape codes. Tables are rendered
//! by hand (columns padded to their widest cell, two spaces apart, no trailing blanks) because
//! that is all the CLI needs and it keeps a table crate out of the server's dependencies.
//! Every cell is cleaned of control characters, so text stored on the server (a reason, a
//! flag description) cannot move the cursor or recolour the operator's terminal.

use serde_json::Value;
use std::ffi::OsStr;
use std::io::{IsTerminal, Write};

/// How a command prints its result (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned tables and sentences for people.
    #[default]
    Table,
    /// The server's JSON document, indented.
    Json,
    /// The server's document as YAML.
    Yaml,
}

/// `value` in `format`, `human` rendering it for [`Format::Table`].
pub fn render(format: Format, value: &Value, human: impl FnOnce(&Value) -> String) -> String {
    match format {
        Format::Table => human(value),
        Format::Json => json(value),
        Format::Yaml => yaml(value),
    }
}

/// `value` as YAML, for `--output yaml` (written by [`super::yaml`], which quotes every string
/// a YAML 1.1 reader could take for something else, such as the variant names `on`/`off`).
pub fn yaml(value: &Value) -> String {
    super::yaml::to_yaml(value)
}

/// Whether output should be coloured: only on a terminal, and never when `NO_COLOR` is set to
/// something non-empty (<https://no-color.org>).
pub fn wants_colour(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// [`wants_colour`] for this process's stdout and environment.
pub fn stdout_wants_colour() -> bool {
    wants_colour(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// What a coloured cell means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Healthy, serving (green).
    Good,
    /// Waiting for someone (yellow).
    Warn,
    /// Killed, rolled back, failed (red).
    Bad,
}

impl Tone {
    fn code(self) -> &'static str {
        match self {
            Tone::Good => "32",
            Tone::Warn => "33",
            Tone::Bad => "31",
        }
    }
}

/// The tone of a state word as the CLI prints it (`KILLED`, `rolled_back`, `paused`, …).
pub fn state_tone(cell: &str) -> Option<Tone> {
    match cell {
        "KILLED" | "rolled_back" | "ROLLED_BACK" | "failed" | "FAILED" => Some(Tone::Bad),
        "paused" | "PAUSED" | "held" | "HELD" | "pending" | "PENDING" => Some(Tone::Warn),
        "on" | "completed" | "COMPLETED" | "ramping" | "RAMPING" | "ok" => Some(Tone::Good),
        _ => None,
    }
}

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

    /// The table, one line per row, columns aligned, without colour.
    pub fn render(&self) -> String {
        self.render_with(false, |_| None)
    }

    /// The table with body cells coloured by `tone` when `colour` is set. Codes wrap the cell
    /// text only, after the widths are measured, so columns stay aligned.
    pub fn render_with(&self, colour: bool, tone: impl Fn(&str) -> Option<Tone>) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut text = String::new();
        for (r, row) in std::iter::once(&self.headers).chain(&self.rows).enumerate() {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                match tone(cell).filter(|_| colour && r > 0) {
                    Some(t) => line.push_str(&format!("\x1b[{}m{cell}\x1b[0m", t.code())),
                    None => line.push_str(cell),
                }
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
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(wants_colour(true, None));
        assert!(wants_colour(true, Some(OsStr::new(""))));
        assert!(!wants_colour(true, Some(OsStr::new("1"))));
        assert!(!wants_colour(false, None));
    }

    #[test]
    fn coloured_tables_keep_their_columns_aligned() {
        let mut t = Table::new(&["KEY", "SWITCH", "ROLLOUT"]);
        t.row(vec!["a".into(), "KILLED".into(), "5%".into()]);
        t.row(vec!["bb".into(), "on".into(), "10%".into()]);
        assert_eq!(t.render_with(false, state_tone), t.render());
        let coloured = t.render_with(true, state_tone);
        assert_eq!(
            coloured,
            "KEY  SWITCH  ROLLOUT\na    \x1b[31mKILLED\x1b[0m  5%\nbb   \x1b[32mon\x1b[0m      10%\n"
        );
    }

    #[test]
    fn yaml_and_json_carry_the_same_document() {
        let doc = serde_json::json!({"flags": [{"key": "a", "rollout": 12.5, "on": true}]});
        let back: Value = serde_yaml_ng::from_str(&render(Format::Yaml, &doc, |_| String::new()))
            .expect("yaml parses");
        assert_eq!(back, doc);
        let back: Value = serde_json::from_str(&render(Format::Json, &doc, |_| String::new()))
            .expect("json parses");
        assert_eq!(back, doc);
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
