//! The one text-table writer: borderless, columns left-aligned and two
//! spaces apart, an optional rule of dashes under the header, no trailing
//! spaces. Built on `comfy-table`.

use comfy_table::presets::NOTHING;
use comfy_table::TableComponent;

/// A table being filled; [`Table::render`] writes it.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
    rule: bool,
    indent: usize,
}

impl Table {
    pub fn new() -> Self {
        Self::default()
    }

    /// The header row: the first line.
    pub fn header<I, S>(mut self, cells: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.header = Some(cells.into_iter().map(Into::into).collect());
        self
    }

    /// Draw a line of dashes under the header, as wide as the table.
    pub fn rule(mut self) -> Self {
        self.rule = true;
        self
    }

    /// Start every line with `n` spaces.
    pub fn indent(mut self, n: usize) -> Self {
        self.indent = n;
        self
    }

    /// Add a row; a row shorter than the widest leaves the rest empty.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    /// The table as lines, each ending in a newline; empty if it has
    /// neither a header nor rows.
    pub fn render(&self) -> String {
        if self.header.is_none() && self.rows.is_empty() {
            return String::new();
        }
        let mut t = comfy_table::Table::new();
        t.load_preset(NOTHING)
            .set_style(TableComponent::VerticalLines, ' ');
        if self.rule && self.header.is_some() {
            t.set_style(TableComponent::HeaderLines, '-')
                .set_style(TableComponent::MiddleHeaderIntersections, '-');
        }
        if let Some(h) = &self.header {
            t.set_header(h.clone());
        }
        for r in &self.rows {
            t.add_row(r.clone());
        }
        // One space of padding after each cell and the vertical line's
        // space make the two spaces between columns; none after the last.
        let last = t.column_count().saturating_sub(1);
        for (i, c) in t.column_iter_mut().enumerate() {
            c.set_padding((0, u16::from(i != last)));
        }
        let pad = " ".repeat(self.indent);
        let mut out = String::new();
        for line in t.lines() {
            let line = line.trim_end();
            if !line.is_empty() {
                out.push_str(&pad);
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_two_spaces_apart_with_no_trailing_spaces() {
        let mut t = Table::new().header(["A", "LONGER", "C"]);
        t.row(["wide cell", "x", ""]);
        t.row(["y", "", "last"]);
        assert_eq!(
            t.render(),
            "A          LONGER  C\n\
             wide cell  x\n\
             y                  last\n"
        );
    }

    #[test]
    fn the_rule_spans_the_table() {
        let mut t = Table::new().header(["section", "unit"]).rule();
        t.row(["v4 REACHABLE tc", "ns/lookup ±"]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "-".repeat(15 + 2 + 11));
        assert_eq!(lines[2], "v4 REACHABLE tc  ns/lookup ±");
    }

    #[test]
    fn indented_rows_without_a_header() {
        let mut t = Table::new().indent(2);
        t.row(["rebuild", "1.0 min"]);
        t.row(["boot-to-command", "3.1 s"]);
        t.row(["short"]);
        assert_eq!(
            t.render(),
            "  rebuild          1.0 min\n  boot-to-command  3.1 s\n  short\n"
        );
        assert_eq!(Table::new().render(), "");
    }
}
