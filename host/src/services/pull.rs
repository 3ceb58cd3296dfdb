//! Pulling an image that is not on the engine, as Compose's
//! `pull_policy: missing` does: through the Engine API, with the
//! credentials of `~/.docker/config.json` (`auths.<registry>.auth`), and
//! per-layer progress for the caller to show.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use bollard::Docker;
use futures_util::StreamExt;

/// The registry part of an image reference (`docker.io` when it has none,
/// as Docker decides: a first component with a `.` or `:`, or `localhost`).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// `name[:tag]` split as the Engine API wants it (`latest` by default; a
/// digest stays in the name).
fn split_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

fn docker_config() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d).join("config.json")),
        None => dirs::home_dir().map(|h| h.join(".docker/config.json")),
    }
}

/// The credentials `docker login` stored for `registry`, if any. Credential
/// helpers (`credsStore`) are not run: a pull without them is anonymous.
pub fn credentials(registry: &str) -> Option<DockerCredentials> {
    let text = std::fs::read_to_string(docker_config()?).ok()?;
    let cfg: serde_json::Value = serde_json::from_str(&text).ok()?;
    let auths = cfg.get("auths")?.as_object()?;
    let keys: Vec<String> = if registry == "docker.io" {
        vec!["https://index.docker.io/v1/".into(), "index.docker.io".into(), "docker.io".into()]
    } else {
        vec![registry.into(), format!("https://{registry}"), format!("http://{registry}")]
    };
    let entry = keys.iter().find_map(|k| auths.get(k))?;
    let auth = entry.get("auth")?.as_str()?;
    let decoded = String::from_utf8(base64_decode(auth)?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some(DockerCredentials { username: Some(user.into()), password: Some(pass.into()), serveraddress: Some(registry.into()), ..Default::default() })
}

/// Standard base64 (with or without padding): the one field of
/// config.json that needs it, not worth a dependency.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim().bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Pull `image`; `progress` is told "3/5 layers, 12/40 MB" as it goes.
/// The error is the registry's own words ("manifest unknown", ...).
pub async fn pull(docker: &Docker, image: &str, progress: &dyn Fn(String)) -> Result<(), String> {
    let (name, tag) = split_tag(image);
    let opts = CreateImageOptions { from_image: Some(name.to_string()), tag: (!tag.is_empty()).then(|| tag.to_string()), ..Default::default() };
    let mut stream = docker.create_image(Some(opts), None, credentials(registry_of(image)));
    // Per layer: (bytes done, bytes total, finished).
    let mut layers: BTreeMap<String, (i64, i64, bool)> = BTreeMap::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| e.to_string())?;
        if let Some(m) = info.error_detail.and_then(|d| d.message) {
            return Err(m);
        }
        let (Some(id), Some(status)) = (info.id, info.status) else { continue };
        if id == tag || id == name {
            continue; // "Pulling from ..." lines
        }
        let e = layers.entry(id).or_insert((0, 0, false));
        if let Some(d) = info.progress_detail {
            e.0 = d.current.unwrap_or(e.0);
            e.1 = d.total.unwrap_or(e.1);
        }
        e.2 |= matches!(status.as_str(), "Pull complete" | "Already exists");
        let done = layers.values().filter(|l| l.2).count();
        let (cur, total) = layers.values().fold((0, 0), |(c, t), l| (c + if l.2 { l.1 } else { l.0 }, t + l.1));
        let mb = |b: i64| b as f64 / 1e6;
        progress(format!("{done}/{} layers, {:.1}/{:.1} MB", layers.len(), mb(cur), mb(total)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_credentials() {
        assert_eq!(registry_of("postgres:16"), "docker.io");
        assert_eq!(registry_of("library/postgres"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/team/x:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("ghcr.io/a/b"), "ghcr.io");
        assert_eq!(split_tag("127.0.0.1:5000/team/x:1"), ("127.0.0.1:5000/team/x", "1"));
        assert_eq!(split_tag("127.0.0.1:5000/team/x"), ("127.0.0.1:5000/team/x", "latest"));
        assert_eq!(split_tag("redis"), ("redis", "latest"));
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("a*b").is_none());
    }
}
