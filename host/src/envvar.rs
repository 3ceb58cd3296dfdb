//! Environment variables as iso writes them: the one check for variable
//! names (used by the config, `.env.thread` and both hook engines) and the
//! one quoting of values in `.env.thread`.
//!
//! A value is written so that every reader of the file gets exactly the
//! value back: `. .env.thread` in sh, bash and zsh, python-dotenv, dotenvy
//! and Docker Compose's `env_file` (the round-trip tests in envfile.rs run
//! them all). Those readers agree only on part of what a quoted value may
//! hold, so [`quote`] picks, per value:
//!
//! - nothing, for values made only of `A-Z a-z 0-9 - _ . / : @ % + , =`;
//! - single quotes, which no shell expands inside: any other value without
//!   a `'`, a `\\` pair or a trailing `\` (python-dotenv undoes `\\` and
//!   `\'` inside single quotes, and Compose reads `\'` as a quote);
//! - double quotes, for a value with a `'` but no `"`, `$`, `` ` `` or `\`
//!   (the characters a shell or a parser would treat specially there);
//! - and refuses the rest, with the reason: NUL (no environment can hold
//!   it), a carriage return (python-dotenv reads it as a newline), `${`
//!   (python-dotenv expands it even inside single quotes), and a `'`
//!   together with `"`, `$`, `` ` `` or `\`.

/// The longest variable name accepted.
pub const NAME_MAX: usize = 256;

/// Why `name` is not a variable name iso accepts, if it is not: ASCII
/// letters, digits and `_`, not starting with a digit, at most
/// [`NAME_MAX`] bytes.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a variable name is empty".into());
    }
    if name.len() > NAME_MAX {
        return Some(format!("a variable name is {} bytes long; at most {NAME_MAX}", name.len()));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Some(format!("`{}` is not a variable name: use letters, digits and `_`, not starting with a digit", printable(name)));
    }
    None
}

/// Characters a value may have to be written without quotes.
fn bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./:@%+,=".contains(c)
}

/// `value` as it is written after `NAME=` in `.env.thread`, or why it
/// cannot be written so that every reader agrees on it.
pub fn quote(value: &str) -> Result<String, String> {
    if value.contains('\0') {
        return Err("it contains a NUL byte, which no environment can hold".into());
    }
    if value.contains('\r') {
        return Err("it contains a carriage return, which python-dotenv reads as a newline".into());
    }
    if value.contains("${") {
        return Err("it contains `${`, which python-dotenv expands even inside quotes".into());
    }
    if !value.is_empty() && value.chars().all(bare) {
        return Ok(value.to_string());
    }
    if !value.contains('\'') {
        if value.contains("\\\\") || value.ends_with('\\') {
            return Err("it contains a `\\\\` pair or ends with `\\`, which dotenv readers undo differently".into());
        }
        return Ok(format!("'{value}'"));
    }
    if let Some(c) = value.chars().find(|c| "\"$`\\".contains(*c)) {
        return Err(format!("it contains both `'` and `{c}`, which no quoting keeps the same for every reader"));
    }
    Ok(format!("\"{value}\""))
}

/// The value [`quote`] wrote, from the text after `NAME=` (which may span
/// lines). Double-quoted values with backslashes were written by iso
/// before 0.1's quoting (`"a\"b\$c"`) and are unescaped as then.
pub fn unquote(written: &str) -> String {
    if let Some(inner) = written.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.to_string();
    }
    if let Some(inner) = written.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        if !inner.contains('\\') {
            return inner.to_string();
        }
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        }
        return out;
    }
    written.to_string()
}

/// `text` with control characters shown as escapes, for messages.
pub fn printable(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["A", "_X", "DATABASE_URL", "a1"] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "Ä", "A\nB", &"A".repeat(NAME_MAX + 1)] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(name_problem("A\nB").unwrap().contains("A\\nB"), "control characters are shown escaped");
    }

    #[test]
    fn quoting_picks_the_form_every_reader_agrees_on() {
        assert_eq!(quote("postgresql://u:p@localhost:1/app").unwrap(), "postgresql://u:p@localhost:1/app");
        assert_eq!(quote("").unwrap(), "''");
        assert_eq!(quote("two words").unwrap(), "'two words'");
        assert_eq!(quote("a&b;c|d").unwrap(), "'a&b;c|d'", "shell operators are quoted");
        assert_eq!(quote("`touch /tmp/x` $(id) $HOME").unwrap(), "'`touch /tmp/x` $(id) $HOME'");
        assert_eq!(quote("line\nnext").unwrap(), "'line\nnext'");
        assert_eq!(quote("it's").unwrap(), "\"it's\"");
        assert_eq!(quote("a\\b").unwrap(), "'a\\b'");
        for bad in ["a\0b", "a\rb", "${HOME}", "it's $HOME", "it's \"x\"", "a\\\\b", "trailing\\"] {
            assert!(quote(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unquote_undoes_quote() {
        for v in ["plain", "", "two words", "it's", "a\nb", "$HOME `x`", "a\\b", "#not a comment"] {
            assert_eq!(unquote(&quote(v).unwrap()), v, "{v:?}");
        }
        assert_eq!(unquote("\"a\\\"b\\$c\\nd\""), "a\"b$c\nd", "the old writer's escapes");
    }
}
