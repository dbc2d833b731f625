//! Which API path a Go template's `secret "P"` reads (docs/migrate-from-vault-agent.md,
//! "secret"): Vault Agent asks `sys/internal/ui/mounts/P` which mount holds P, and on a KV
//! version 2 mount inserts `data/` after the mount, unless P already names `data/` or
//! `metadata/`. Pure, so the rules are tested here; the request is the fetcher's, the rewrite
//! the template engine's.

use serde_json::Value;

/// The API path for `raw` given Vault's answer about its mount; `raw` itself when the mount is
/// not KV version 2 or the answer does not say.
pub fn api_path(raw: &str, mounts_answer: &Value) -> String {
    let data = mounts_answer.get("data");
    let kind = data.and_then(|d| d.get("type")).and_then(Value::as_str);
    let version = data
        .and_then(|d| d.pointer("/options/version"))
        .and_then(Value::as_str);
    let mount = data.and_then(|d| d.get("path")).and_then(Value::as_str);
    match (kind, version, mount) {
        (Some("kv"), Some("2"), Some(mount)) if !mount.is_empty() => shim(raw, mount),
        _ => raw.to_string(),
    }
}

/// The rewrite ([`crate::gotemplate::kv2_path`]) on the path without its query; a query
/// (`?version=2`) stays at the end.
fn shim(raw: &str, mount: &str) -> String {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let rewritten = crate::gotemplate::kv2_path(path, mount, true);
    match query {
        Some(q) => format!("{rewritten}?{q}"),
        None => rewritten,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(version: &str, path: &str) -> Value {
        json!({"data": {"type": "kv", "path": path, "options": {"version": version}}})
    }

    #[test]
    fn kv2_paths_get_data_inserted_once() {
        let m = kv("2", "secret/");
        assert_eq!(api_path("secret/app", &m), "secret/data/app");
        assert_eq!(api_path("secret/data/app", &m), "secret/data/app");
        assert_eq!(api_path("secret/metadata/app", &m), "secret/metadata/app");
        assert_eq!(api_path("secret", &m), "secret/data");
        assert_eq!(api_path("secret/", &m), "secret/data");
        assert_eq!(
            api_path("secret/a/b?version=2", &m),
            "secret/data/a/b?version=2"
        );
        let nested = kv("2", "team/kv/");
        assert_eq!(
            api_path("team/kv/db/creds", &nested),
            "team/kv/data/db/creds"
        );
    }

    #[test]
    fn other_mounts_keep_the_path() {
        assert_eq!(api_path("kv/app", &kv("1", "kv/")), "kv/app");
        assert_eq!(api_path("kv/app", &kv("", "kv/")), "kv/app");
        let db = json!({"data": {"type": "database", "path": "database/"}});
        assert_eq!(api_path("database/creds/app", &db), "database/creds/app");
        assert_eq!(api_path("x/y", &json!({})), "x/y");
    }
}
