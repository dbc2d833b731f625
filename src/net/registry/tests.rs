use super::*;
use serde_json::json;

#[test]
fn challenges_are_read_as_registries_send_them() {
    let (s, p) = parse_challenge(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
    );
    assert_eq!(s, "Bearer");
    assert_eq!(p["realm"], "https://auth.docker.io/token");
    assert_eq!(p["service"], "registry.docker.io");
    assert_eq!(p["scope"], "repository:library/nginx:pull");
    let (s, p) = parse_challenge(r#"Basic realm="basic-realm""#);
    assert_eq!((s.as_str(), p["realm"].as_str()), ("Basic", "basic-realm"));
    let (_, p) = parse_challenge("Bearer realm=https://r.example/t, service=svc");
    assert_eq!(
        (p["realm"].as_str(), p["service"].as_str()),
        ("https://r.example/t", "svc")
    );
}

#[test]
fn an_index_is_resolved_to_the_platform_asked_for() {
    let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"digest": d('a'), "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": d('b'), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": d('c'), "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": d('e'), "platform": {"os": "unknown", "architecture": "unknown"}}
    ]});
    assert!(is_index(&index));
    assert_eq!(pick(&index, &Platform::default()).unwrap(), d('c'));
    assert_eq!(
        pick(&index, &Platform::parse("linux/arm64").unwrap()).unwrap(),
        d('b')
    );
    assert_eq!(
        pick(&index, &Platform::parse("linux/arm/v7").unwrap()).unwrap(),
        d('a')
    );
    let m = pick(&index, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
    assert!(
        m.contains("no manifest for linux/s390x") && m.contains("linux/amd64"),
        "{m}"
    );
    assert!(Platform::parse("linux").is_err() && Platform::parse("linux/amd64/v1/x").is_err());
}

#[test]
fn digests_are_checked() {
    let body = b"{}";
    let d = sha256_digest(body);
    assert!(is_digest(&d));
    assert!(verify(body, &d).is_ok());
    assert!(verify(b"{ }", &d).is_err());
    assert!(!is_digest("sha256:ABC") && !is_digest("sha512:00"));
}
