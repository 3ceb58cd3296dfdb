//! Ready stacks for `iso setup --template NAME` (the files in `templates/`).

use super::Error;

#[derive(Debug)]
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    pub text: &'static str,
}

pub const ALL: &[Template] = &[
    Template {
        name: "postgres-redis-api",
        about: "Postgres + Redis + your API built from ./Dockerfile",
        text: include_str!("../../../templates/postgres-redis-api.toml"),
    },
    Template { name: "postgres-redis", about: "Postgres + Redis", text: include_str!("../../../templates/postgres-redis.toml") },
    Template { name: "postgres", about: "Postgres only", text: include_str!("../../../templates/postgres.toml") },
    Template { name: "redis", about: "Redis only", text: include_str!("../../../templates/redis.toml") },
    Template {
        name: "compose",
        about: "your Compose project (compose.yml, its override, .env), per thread",
        text: include_str!("../../../templates/compose.toml"),
    },
];

pub fn find(name: &str) -> Result<&'static Template, Error> {
    ALL.iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::NoSuchTemplate { name: name.to_string(), known: ALL.iter().map(|t| t.name).collect::<Vec<_>>().join(", ") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn every_template_is_a_valid_config() {
        for t in ALL {
            let mut c = Config::default();
            c.apply_file(Path::new(t.name), t.text).unwrap_or_else(|e| panic!("{}: {e}", t.name));
            assert!(c.has_stack(), "{}", t.name);
        }
        assert!(crate::error::with_hint(&find("nope").unwrap_err()).contains("postgres-redis-api"));
    }
}
