//! `.env` and `env_file` files as Compose v2 reads them: `KEY=VALUE` (or
//! `KEY: VALUE`), an optional `export ` prefix, `#` comments (in an unquoted
//! value only after a space), single quotes literal, double quotes with
//! `\n`, `\r`, `\"` and `\\` escapes and interpolation, unquoted values
//! interpolated, and a bare `KEY` taking the value from the environment.

use std::collections::BTreeMap;

use super::interpolate::{Interpolator, Problem};

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    pub line: usize,
    pub message: String,
}

/// Parse `text`. Variables in values are looked up in `env` first, then
/// among the keys defined earlier in the file (as Compose does).
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<(String, Option<String>)>, DotenvError> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    let mut rest = text;
    loop {
        // Skip blank lines and comments.
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('#') {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
            continue;
        }
        let stmt_line = text[..text.len() - rest.len()].matches('\n').count() + 1;
        let fail = |message: String| DotenvError { line: stmt_line, message };
        let body = rest.strip_prefix("export").filter(|r| r.starts_with([' ', '\t'])).map_or(rest, str::trim_start);
        let end = body.find(['=', ':', '\n']).unwrap_or(body.len());
        let key = body[..end].trim_end();
        if key.is_empty() {
            return Err(fail("a line without a variable name".into()));
        }
        if let Some(c) = key.chars().find(|c| !(c.is_alphanumeric() || *c == '_' || *c == '.')) {
            return Err(fail(format!("unexpected character {c:?} in variable name {key:?}")));
        }
        let key = key.to_string();
        let sep = body[end..].chars().next();
        if sep != Some('=') && sep != Some(':') {
            // A bare KEY: inherited from the environment, if set there.
            if let Some(v) = env(&key) {
                out.push((key, Some(v)));
            }
            rest = &body[end..];
            continue;
        }
        let value_text = body[end + 1..].trim_start_matches([' ', '\t']);
        let known: BTreeMap<String, String> = out.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect();
        let lookup = |name: &str| env(name).or_else(|| known.get(name).cloned());
        let mut interp = Interpolator::new(&lookup);
        let expand = |interp: &mut Interpolator, s: &str| interp.apply(s).map_err(|p: Problem| fail(p.to_string()));
        let (value, after) = match value_text.chars().next() {
            Some(q @ ('\'' | '"')) => {
                let close = closing_quote(&value_text[1..], q).ok_or_else(|| fail(format!("unterminated quoted value {}", first_line(value_text))))?;
                let raw = &value_text[1..1 + close];
                let after = &value_text[1 + close + 1..];
                let value = if q == '"' { expand(&mut interp, &unescape(raw))? } else { raw.to_string() };
                // Anything after the closing quote up to the end of line is dropped.
                (value, after.find('\n').map_or("", |i| &after[i..]))
            }
            _ => {
                let end = value_text.find('\n').unwrap_or(value_text.len());
                let mut v = &value_text[..end];
                if let Some(i) = comment_start(v) {
                    v = &v[..i];
                }
                (expand(&mut interp, v.trim_end())?, &value_text[end..])
            }
        };
        out.retain(|(k, _)| *k != key);
        out.push((key, Some(value)));
        rest = after;
    }
    Ok(out)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Where a comment starts in an unquoted value: a `#` at the start or
/// after whitespace.
fn comment_start(v: &str) -> Option<usize> {
    let b = v.as_bytes();
    (0..b.len()).find(|&i| b[i] == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t'))
}

/// The closing quote `q` in `s`, skipping quotes escaped with a backslash.
fn closing_quote(s: &str, q: char) -> Option<usize> {
    let mut prev = None;
    for (i, c) in s.char_indices() {
        if c == q && prev != Some('\\') {
            return Some(i);
        }
        prev = Some(c);
    }
    None
}

/// Escapes inside double quotes.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(c @ ('"' | '\\' | '$' | '\'')) => out.push(c),
            Some(c) => {
                out.push('\\');
                out.push(c);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Compose v2.40 gives for each line (checked by hand with
    /// `docker compose config`, shell env SHELLV=fromshell A=shellA).
    #[test]
    fn reads_like_compose() {
        let text = "# comment\nA=plain\nB = spaced  \nC=with#hash\nD=with #comment\nE=\"double ${A} \\n x \\\" q\"\nF='single ${A} \\n'\n\
                    export G=exported\nH=${A}-${UNSET:-def}\nI=$A.suffix\nJ:yaml\nK=\nL=\"multi\nline\"\nM=${SHELLV}\nO=\"a\"trail\nP=a\\ b\nQ=${H}\nINHERIT\nNOPE\n";
        let env = |k: &str| match k {
            "SHELLV" => Some("fromshell".to_string()),
            "A" => Some("shellA".to_string()),
            "INHERIT" => Some("inherited".to_string()),
            _ => None,
        };
        let got: BTreeMap<String, Option<String>> = parse(text, &env).unwrap().into_iter().collect();
        let want = [
            ("A", "plain"),
            ("B", "spaced"),
            ("C", "with#hash"),
            ("D", "with"),
            ("E", "double shellA \n x \" q"),
            ("F", "single ${A} \\n"),
            ("G", "exported"),
            ("H", "shellA-def"),
            ("I", "shellA.suffix"),
            ("J", "yaml"),
            ("K", ""),
            ("L", "multi\nline"),
            ("M", "fromshell"),
            ("O", "a"),
            ("P", "a\\ b"),
            ("Q", "shellA-def"),
            ("INHERIT", "inherited"),
        ];
        for (k, v) in want {
            assert_eq!(got.get(k), Some(&Some(v.to_string())), "{k}");
        }
        assert!(!got.contains_key("NOPE"), "a bare unset key is not set");
    }

    #[test]
    fn bad_lines_name_their_line() {
        let env = |_: &str| None;
        let e = parse("A=1\n\nit's=x\n", &env).unwrap_err();
        assert_eq!(e.line, 3, "{e:?}");
        let e = parse("A=\"open\nB=2\n", &env).unwrap_err();
        assert!(e.message.contains("unterminated"), "{e:?}");
        assert!(parse("A=${B:?needed}\n", &env).unwrap_err().message.contains("required variable B"));
    }
}
