//! Compose's variable interpolation, written to match Compose v2 (compose-go)
//! form for form: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+replacement}`,
//! `${VAR+replacement}`, with defaults, errors and replacements themselves
//! interpolated (nesting). No crate does this exact syntax (shellexpand
//! lacks `?` and `+`, envsubst the operators), hence our own.
//!
//! Quirks kept on purpose, because Compose has them: the text after an
//! operator is interpolated even when it is not used (so
//! `${SET-${UNSET?x}}` is an error); a `$` that starts nothing (`$ `,
//! `$1`) stays a literal `$`; `${}` or `${VAR:1}` is an error.

use std::collections::BTreeSet;

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `${NAME:?message}` or `${NAME?message}` without a value.
    Required { name: String, message: String },
    /// Not a form Compose knows (`${}`, `${A:1}`, an unclosed `${`).
    Invalid { template: String },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Required { name, message } if message.is_empty() => write!(f, "required variable {name} is missing a value"),
            Problem::Required { name, message } => write!(f, "required variable {name} is missing a value: {message}"),
            Problem::Invalid { template } => write!(f, "invalid interpolation format `{template}` (write `$$` for a literal `$`)"),
        }
    }
}

/// Interpolates strings against one environment and remembers which
/// variables were used while unset (Compose warns about each).
pub struct Interpolator<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub unset: BTreeSet<String>,
}

impl<'a> Interpolator<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Interpolator<'a> {
        Interpolator { lookup, unset: BTreeSet::new() }
    }

    /// `s` with every variable replaced.
    pub fn apply(&mut self, s: &str) -> Result<String, Problem> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(r) = after.strip_prefix('$') {
                out.push('$');
                rest = r;
            } else if let Some(inner) = after.strip_prefix('{') {
                let Some(end) = closing_brace(inner) else { return Err(Problem::Invalid { template: s.to_string() }) };
                out.push_str(&self.braced(&inner[..end], s)?);
                rest = &inner[end + 1..];
            } else {
                let len = name_len(after);
                if len == 0 {
                    out.push('$'); // `$ `, `$1`, a trailing `$`: literal, as in Compose
                } else {
                    out.push_str(&self.value(&after[..len]).unwrap_or_default());
                }
                rest = &after[len..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn value(&mut self, name: &str) -> Option<String> {
        let v = (self.lookup)(name);
        if v.is_none() {
            self.unset.insert(name.to_string());
        }
        v
    }

    /// The inside of `${...}`.
    fn braced(&mut self, inner: &str, whole: &str) -> Result<String, Problem> {
        let invalid = || Problem::Invalid { template: whole.to_string() };
        let len = name_len(inner);
        if len == 0 {
            return Err(invalid());
        }
        let name = &inner[..len];
        let op = &inner[len..];
        if op.is_empty() {
            return Ok(self.value(name).unwrap_or_default());
        }
        let (colon, kind, arg) = match op.strip_prefix(':') {
            Some(o) => (true, o.chars().next().ok_or_else(invalid)?, &o[1..]),
            None => (false, op.chars().next().unwrap_or(' '), &op[1..]),
        };
        if !matches!(kind, '-' | '?' | '+') {
            return Err(invalid());
        }
        // Compose interpolates the argument whether or not it is used.
        let arg = self.apply(arg)?;
        let v = (self.lookup)(name);
        let present = match (&v, colon) {
            (Some(v), true) => !v.is_empty(),
            (Some(_), false) => true,
            (None, _) => false,
        };
        match kind {
            '-' => Ok(if present { v.unwrap_or_default() } else { arg }),
            '+' => Ok(if present { arg } else { String::new() }),
            _ if present => Ok(v.unwrap_or_default()),
            _ => Err(Problem::Required { name: name.to_string(), message: arg }),
        }
    }
}

/// Length of the variable name at the start of `s` (`[_A-Za-z][_A-Za-z0-9]*`).
fn name_len(s: &str) -> usize {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_ascii_alphabetic() => 1 + chars.take_while(|c| *c == '_' || c.is_ascii_alphanumeric()).count(),
        _ => 0,
    }
}

/// Index of the `}` closing a `${` whose inside starts `s`, counting the
/// `${` nested in it.
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 1;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &str) -> Result<String, Problem> {
        let env = |k: &str| match k {
            "SET" => Some("val".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        Interpolator::new(&env).apply(s)
    }

    /// Every form, with what Compose v2.40 gives for it (checked by hand
    /// with `docker compose config`; the corpus test checks the loader).
    #[test]
    fn every_form_as_compose_does_it() {
        let ok = [
            ("${SET}", "val"),
            ("${UNSET}", ""),
            ("$SET", "val"),
            ("$SET-x", "val-x"),
            ("${SET:-d}", "val"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("${EMPTY?boom}", ""),
            ("${SET:+r}", "r"),
            ("${EMPTY:+r}", ""),
            ("${EMPTY+r}", "r"),
            ("${UNSET+r}", ""),
            ("${UNSET:-${SET}}", "val"),
            ("${UNSET:-${UNSET2:-deep}}x", "deepx"),
            ("$$SET", "$SET"),
            ("a $ b", "a $ b"),
            ("$1", "$1"),
            ("${SET:-a}}", "val}"),
            ("${UNSET:-a:b-c}", "a:b-c"),
            ("${SET:+${SET}x}", "valx"),
            ("$$$SET", "$val"),
            ("${UNSET:-}", ""),
            ("x${SET}y$SET.z", "xvalyval.z"),
            ("${UNSET:-$$}", "$"),
            ("trailing $", "trailing $"),
        ];
        for (input, want) in ok {
            assert_eq!(run(input).as_deref(), Ok(want), "{input}");
        }
        let required = |name: &str, message: &str| Err(Problem::Required { name: name.into(), message: message.into() });
        assert_eq!(run("${UNSET:?boom here}"), required("UNSET", "boom here"));
        assert_eq!(run("${EMPTY:?boom}"), required("EMPTY", "boom"));
        assert_eq!(run("${UNSET?boom}"), required("UNSET", "boom"));
        assert_eq!(run("${UNSET:?}").unwrap_err().to_string(), "required variable UNSET is missing a value");
        // The argument is interpolated even when unused.
        assert_eq!(run("${SET-${UNSET?inner}}"), required("UNSET", "inner"));
        for bad in ["${}", "${SET", "${SET:1}", "${SET/a/b}", "${1A}"] {
            assert!(matches!(run(bad), Err(Problem::Invalid { .. })), "{bad}: {:?}", run(bad));
        }
    }

    #[test]
    fn unset_variables_are_remembered() {
        let env = |_: &str| None;
        let mut i = Interpolator::new(&env);
        i.apply("${A} $B ${C:-x}").unwrap();
        assert_eq!(i.unset.iter().map(String::as_str).collect::<Vec<_>>(), ["A", "B"]);
    }
}
