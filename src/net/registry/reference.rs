//! What a registry lookup starts from, parsed from text the pod's author wrote: an image
//! reference (`[host[:port]/]repository[:tag][@sha256:digest]`, normalised as the container
//! runtimes do), the platform an index is resolved to, and the registry credentials of
//! `kubernetes.io/dockerconfigjson` Secrets.
//!
//! Invariants: a parsed repository, tag and digest only hold characters that are safe in a URL
//! path (no `..`, no `?`, no `%`), so they are placed into URLs as they are; a credential
//! belongs to exactly one registry host (`host[:port]`, lowercase), and its `Debug` shows the
//! host and the user name length, never the secret.

use base64::Engine;

use crate::secret::SecretString;

/// Docker Hub: where an image without a registry host comes from, and the host its API is at.
pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// An image reference, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `host[:port]` as written (lowercase); `docker.io` for Docker Hub.
    pub registry: String,
    /// The repository path, e.g. `library/nginx`.
    pub repository: String,
    /// The tag, `latest` when neither a tag nor a digest is given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`, when pinned.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `image` as kubelet's runtime would pull it; `Err` says what is wrong.
    pub fn parse(image: &str) -> Result<ImageRef, String> {
        if image.is_empty() || image.len() > 512 {
            return Err("an image reference has 1 to 512 characters".into());
        }
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (image, None),
        };
        if let Some(d) = digest {
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(format!(
                    "digest {:?} is not sha256: and 64 lowercase hex digits",
                    crate::net::http::network_text(d, 80)
                ));
            }
        }
        // A tag is after the last ':' that follows the last '/' (a port is before a '/').
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(format!(
                    "tag {:?} is not a tag (letters, digits, '_', '.', '-', at most 128)",
                    crate::net::http::network_text(t, 80)
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_ascii_lowercase(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | DOCKER_HUB_API => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let repository = match registry == DOCKER_HUB && !repository.contains('/') {
            true => format!("library/{repository}"),
            false => repository,
        };
        check_host(&registry)?;
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if repository.len() > 255 || !repository.split('/').all(component_ok) {
            return Err(format!(
                "repository {:?} is not a repository name (lowercase letters, digits and \
                 separators '.', '_', '-', '/')",
                crate::net::http::network_text(&repository, 80)
            ));
        }
        Ok(ImageRef {
            registry,
            repository,
            tag: match (tag, digest) {
                (Some(t), _) => Some(t.to_string()),
                (None, Some(_)) => None,
                (None, None) => Some("latest".to_string()),
            },
            digest: digest.map(str::to_string),
        })
    }

    /// The host the registry's API is at (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        match self.registry.as_str() {
            DOCKER_HUB => DOCKER_HUB_API,
            other => other,
        }
    }

    /// What the manifest is asked for by: the digest when pinned, else the tag.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

/// `host[:port]`: a DNS name or an IPv4 address (IPv6 literals are not supported), a port of
/// digits.
fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    match name_ok && port_ok {
        true => Ok(()),
        false => Err(format!(
            "registry {:?} is not a host name with an optional port",
            crate::net::http::network_text(host, 80)
        )),
    }
}

/// The platform an index is resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl Platform {
    /// `os/arch[/variant]`, e.g. `linux/arm64/v8`.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.len() <= 32
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(format!(
                "{:?} is not a platform: os/architecture[/variant], e.g. linux/amd64",
                crate::net::http::network_text(text, 80)
            )),
        }
    }

    pub fn name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// One registry's user name and password, from a pull Secret.
#[derive(Clone)]
pub struct Credential {
    /// `host[:port]`, lowercase, the only host it is sent to (Docker Hub: `docker.io`).
    pub registry: String,
    pub username: SecretString,
    pub password: SecretString,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// The `Authorization: Basic` value.
    pub fn basic(&self) -> SecretString {
        let raw = format!("{}:{}", self.username.expose(), self.password.expose());
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
        let mut raw = raw;
        crate::secret::wipe_string(&mut raw);
        SecretString::new(format!("Basic {encoded}"))
    }
}

/// The registry host a `.dockerconfigjson` `auths` key names: `https://index.docker.io/v1/`,
/// `host:port`, `http://host/path` all become `host[:port]`; Docker Hub's names become
/// `docker.io`.
pub fn key_host(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | DOCKER_HUB_API => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// The credentials of a `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson` (or a
/// `kubernetes.io/dockercfg` Secret's `.dockercfg`, the same map without `auths`), as
/// kubelet reads them: each entry's `auth` (base64 of `user:password`) or its `username` and
/// `password`. Entries without either are skipped; `Err` names what is malformed, never a
/// value.
pub fn parse_docker_config(json: &[u8], legacy: bool) -> Result<Vec<Credential>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("not JSON ({})", e.classify_name()))?;
    let auths = match legacy {
        true => doc.as_object(),
        false => doc.get("auths").and_then(serde_json::Value::as_object),
    };
    let Some(auths) = auths else {
        return Err("no \"auths\" object".into());
    };
    let mut out = Vec::new();
    for (key, entry) in auths.iter().take(64) {
        let registry = key_host(key);
        if check_host(&registry).is_err() {
            continue;
        }
        let text = |k: &str| {
            entry
                .get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
        };
        let (username, password) = match text("auth") {
            "" => (text("username").to_string(), text("password").to_string()),
            auth => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| format!("auths[{key:?}].auth is not base64"))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| format!("auths[{key:?}].auth is not UTF-8"))?;
                match decoded.split_once(':') {
                    Some((u, p)) => (u.to_string(), p.to_string()),
                    None => {
                        return Err(format!(
                            "auths[{key:?}].auth is not base64 of user:password"
                        ))
                    }
                }
            }
        };
        if username.is_empty() && password.is_empty() {
            continue;
        }
        out.push(Credential {
            registry,
            username: SecretString::new(username),
            password: SecretString::new(password),
        });
    }
    Ok(out)
}

/// serde_json's error kind without its position or any quoted input.
trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "ends early",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    #[test]
    fn references_are_normalised_as_runtimes_pull_them() {
        let nginx = r("nginx");
        assert_eq!(
            (
                nginx.registry.as_str(),
                nginx.repository.as_str(),
                nginx.reference()
            ),
            ("docker.io", "library/nginx", "latest")
        );
        assert_eq!(nginx.api_host(), "registry-1.docker.io");
        let t = r("nginxinc/nginx-unprivileged:1.27");
        assert_eq!(
            (t.repository.as_str(), t.reference()),
            ("nginxinc/nginx-unprivileged", "1.27")
        );
        let p = r("127.0.0.1:5000/team/app:v1");
        assert_eq!(
            (p.registry.as_str(), p.repository.as_str(), p.reference()),
            ("127.0.0.1:5000", "team/app", "v1")
        );
        let d = format!("localhost/app@sha256:{}", "a".repeat(64));
        let d = r(&d);
        assert_eq!((d.registry.as_str(), d.tag.as_deref()), ("localhost", None));
        assert!(d.reference().starts_with("sha256:"));
        assert_eq!(r("index.docker.io/library/busybox").registry, "docker.io");
        assert_eq!(
            r("Registry.Example.com/a/b:c").registry,
            "registry.example.com"
        );
    }

    #[test]
    fn references_that_would_leave_their_path_are_refused() {
        for bad in [
            "",
            "reg.example/../../v2/other",
            "reg.example/a/b?x=1",
            "reg.example/a%2f",
            "reg.example/UPPER",
            "nginx:bad/tag",
            "nginx:",
            "nginx@sha256:short",
            "nginx@md5:0000",
            "bad host.example/a",
            "reg.example:port/a",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn docker_config_entries_belong_to_one_host_and_never_show_their_secret() {
        let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cret-pw");
        let json = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "reg.example:5000": {{"username": "u", "password": "p2"}},
                "empty.example": {{}}}}}}"#
        );
        let creds = parse_docker_config(json.as_bytes(), false).unwrap();
        assert_eq!(creds.len(), 2);
        assert_eq!(creds[0].registry, "docker.io");
        assert_eq!(creds[0].username.expose(), "robot");
        assert_eq!(creds[1].registry, "reg.example:5000");
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("robot"),
            "{shown}"
        );
        let expected = base64::engine::general_purpose::STANDARD.encode("u:p2");
        assert_eq!(creds[1].basic().expose(), format!("Basic {expected}"));
        let legacy = format!(r#"{{"reg.example": {{"auth": "{auth}"}}}}"#);
        assert_eq!(
            parse_docker_config(legacy.as_bytes(), true).unwrap()[0].registry,
            "reg.example"
        );
        let m =
            parse_docker_config(br#"{"auths": {"r.example": {"auth": "!!"}}}"#, false).unwrap_err();
        assert!(m.contains("not base64"), "{m}");
        let m = parse_docker_config(b"{\"auths\": \"s3cret", false).unwrap_err();
        assert!(!m.contains("s3cret"), "{m}");
    }
}
