//! Safe markdown from untrusted text (branch names, config values, log lines, model output):
//! nothing from a run can end a table cell, open HTML, or forge the report's hidden markers.

/// Breaks HTML comment openers so text from a run can never be mistaken for a report marker.
pub fn neutralize(text: &str) -> String {
    text.replace("<!--", "<! --")
}

/// Text for a table cell: one line, pipes escaped, HTML shown as text.
pub fn cell(text: &str) -> String {
    neutralize(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// `text` shortened to `max` characters, with an ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Inline code that holds any text: the fence is longer than any backtick run inside.
pub fn code(text: &str) -> String {
    let text = neutralize(text).replace(['\r', '\n'], " ");
    let fence = "`".repeat(longest_backtick_run(&text) + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// A fenced code block that holds any text.
pub fn code_block(info: &str, text: &str) -> String {
    let text = neutralize(text);
    let fence = "`".repeat((longest_backtick_run(&text) + 1).max(3));
    let text = text.trim_end_matches('\n');
    format!("{fence}{info}\n{text}\n{fence}\n")
}

/// Each line quoted (`> `), for text someone else wrote, such as a model's.
pub fn quote(text: &str) -> String {
    neutralize(text)
        .lines()
        .map(|line| format!("> {line}\n"))
        .collect()
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// A number as reports show it: four decimals, or scientific for very large or small values.
pub fn num(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let abs = value.abs();
    if abs != 0.0 && !(1e-3..1e5).contains(&abs) {
        format!("{value:.3e}")
    } else {
        format!("{value:.4}")
    }
}

/// A signed change, with a real minus sign.
pub fn signed(value: f64, suffix: &str) -> String {
    let text = num(value.abs());
    if value < 0.0 {
        format!("−{text}{suffix}")
    } else {
        format!("+{text}{suffix}")
    }
}

/// A signed percentage with two decimals.
pub fn percent(value: f64) -> String {
    let text = format!("{:.2}%", value.abs());
    if value < 0.0 {
        format!("−{text}")
    } else {
        format!("+{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_stays_inside_its_markup() {
        assert_eq!(cell("a|b\n<b>x</b>"), "a\\|b &lt;b&gt;x&lt;/b&gt;");
        assert_eq!(code("x\"; curl evil #"), "`x\"; curl evil #`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`a"), "`` `a ``");
        assert_eq!(code_block("text", "```\nx\n"), "````text\n```\nx\n````\n");
        assert_eq!(neutralize("<!-- mlwf:report -->"), "<! -- mlwf:report -->");
        assert_eq!(quote("a\n<!-- b"), "> a\n> <! -- b\n");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(1.23456), "1.2346");
        assert_eq!(num(123456.0), "1.235e5");
        assert_eq!(num(0.0001234), "1.234e-4");
        assert_eq!(num(0.0), "0.0000");
        assert_eq!(signed(-0.1, ""), "−0.1000");
        assert_eq!(percent(7.6923), "+7.69%");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
