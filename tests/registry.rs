//! The webhook's registry client (src/net/registry.rs) against a real registry (Debian's
//! docker-registry 2.8 over TLS, images pushed by the tests over its API) and a stand-in for
//! what the real one does not do (Bearer tokens, blobs redirected to another origin).

mod common;

use std::time::{Duration, Instant};

use common::registry::{StandIn, TestRegistry};
use secretdrop::net::registry::{reference::parse_docker_config, Credential, Platform, Registry};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = common::harness_dir().join(common::unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn within(secs: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(secs)
}

fn credential(host: &str, user: &str, password: &str) -> Vec<Credential> {
    let json = serde_json::json!({"auths": {host: {"username": user, "password": password}}});
    parse_docker_config(json.to_string().as_bytes(), false).unwrap()
}

#[test]
fn entrypoint_and_cmd_are_read_and_cached_by_digest_and_a_moved_tag_is_seen() {
    let reg = TestRegistry::start(&dir("registry-anon"), None);
    let repo = "team/app";
    reg.push_image(
        repo,
        "v1",
        Some(&["/app/server", "--port=$(PORT)"]),
        Some(&["serve"]),
        ("linux", "amd64"),
    );
    let client = Registry::new(Some(&reg.ca)).unwrap();
    let image = format!("{}/{repo}:v1", reg.host());
    let rt = runtime();
    let p = Platform::default();

    let cold = Instant::now();
    let got = rt
        .block_on(client.process(&image, &p, &[], within(3)))
        .unwrap();
    let cold = cold.elapsed();
    assert_eq!(got.entrypoint, ["/app/server", "--port=$(PORT)"]);
    assert_eq!(got.cmd, ["serve"]);
    let first = reg.requests(repo);
    assert_eq!(
        first
            .iter()
            .map(|l| l.split('/').next().unwrap().trim())
            .collect::<Vec<_>>(),
        ["HEAD", "GET", "GET"],
        "HEAD, the manifest by digest, the config blob: {first:?}"
    );
    assert!(
        first[1].ends_with(&format!("manifests/{}", got.digest)),
        "{first:?}"
    );

    // Unchanged tag: one HEAD, nothing else.
    let warm = Instant::now();
    let again = rt
        .block_on(client.process(&image, &p, &[], within(3)))
        .unwrap();
    let warm = warm.elapsed();
    assert_eq!(again, got);
    let second = reg.requests(repo);
    assert_eq!(second.len(), first.len() + 1, "{second:?}");
    assert!(second.last().unwrap().starts_with("HEAD"), "{second:?}");
    eprintln!("registry lookup: cold {cold:?}, warm {warm:?}");

    // The tag moves: the new digest is read.
    reg.push_image(repo, "v1", Some(&["/app/v2"]), None, ("linux", "amd64"));
    let moved = rt
        .block_on(client.process(&image, &p, &[], within(3)))
        .unwrap();
    assert_eq!(moved.entrypoint, ["/app/v2"]);
    assert!(moved.cmd.is_empty());
    assert_ne!(moved.digest, got.digest);

    // Pinned by digest and cached: no request at all.
    let pinned = format!("{}/{repo}@{}", reg.host(), moved.digest);
    let before = reg.requests(repo).len();
    let by_digest = rt
        .block_on(client.process(&pinned, &p, &[], within(3)))
        .unwrap();
    assert_eq!(by_digest.entrypoint, ["/app/v2"]);
    assert_eq!(reg.requests(repo).len(), before);

    // No such tag: a 404 that says so.
    let m = rt
        .block_on(client.process(&format!("{}/{repo}:nope", reg.host()), &p, &[], within(3)))
        .unwrap_err();
    assert!(m.contains("HTTP 404") && m.contains(&reg.host()), "{m}");
}

#[test]
fn an_index_is_resolved_to_the_platform() {
    let reg = TestRegistry::start(&dir("registry-index"), None);
    let repo = "multi";
    let amd = reg.push_image(
        repo,
        "amd64-only",
        Some(&["/bin/amd"]),
        None,
        ("linux", "amd64"),
    );
    let arm = reg.push_image(
        repo,
        "arm64-only",
        Some(&["/bin/arm"]),
        None,
        ("linux", "arm64"),
    );
    reg.push_index(
        repo,
        "v1",
        &[(("linux", "arm64"), arm), (("linux", "amd64"), amd)],
    );
    let client = Registry::new(Some(&reg.ca)).unwrap();
    let rt = runtime();
    let image = format!("{}/{repo}:v1", reg.host());
    let on = |platform: &str| {
        rt.block_on(client.process(&image, &Platform::parse(platform).unwrap(), &[], within(3)))
    };
    assert_eq!(on("linux/amd64").unwrap().entrypoint, ["/bin/amd"]);
    assert_eq!(on("linux/arm64").unwrap().entrypoint, ["/bin/arm"]);
    let m = on("linux/ppc64le").unwrap_err();
    assert!(
        m.contains("no manifest for linux/ppc64le") && m.contains("linux/arm64"),
        "{m}"
    );
}

#[test]
fn basic_auth_uses_the_credential_of_this_registry_only() {
    let reg = TestRegistry::start(&dir("registry-basic"), Some(("puller", "pull-pw-7")));
    reg.push_image(
        "private",
        "v1",
        Some(&["/private"]),
        None,
        ("linux", "amd64"),
    );
    let client = Registry::new(Some(&reg.ca)).unwrap();
    let rt = runtime();
    let image = format!("{}/private:v1", reg.host());
    let p = Platform::default();
    let m = rt
        .block_on(client.process(&image, &p, &[], within(3)))
        .unwrap_err();
    assert!(
        m.contains("no pull Secret for") && m.contains("imagePullSecrets"),
        "{m}"
    );
    // A credential for another host is not sent here.
    let elsewhere = credential("other.example:5000", "puller", "pull-pw-7");
    let m = rt
        .block_on(client.process(&image, &p, &elsewhere, within(3)))
        .unwrap_err();
    assert!(m.contains("no pull Secret for"), "{m}");
    let wrong = credential(&reg.host(), "puller", "wrong");
    let m = rt
        .block_on(client.process(&image, &p, &wrong, within(3)))
        .unwrap_err();
    assert!(
        m.contains("credential was refused") && !m.contains("wrong"),
        "{m}"
    );
    let right = credential(&format!("https://{}", reg.host()), "puller", "pull-pw-7");
    let got = rt
        .block_on(client.process(&image, &p, &right, within(3)))
        .unwrap();
    assert_eq!(got.entrypoint, ["/private"]);
}

#[test]
fn a_registry_that_is_down_or_silent_fails_within_the_time_given() {
    let client = Registry::new(None).unwrap();
    let rt = runtime();
    let p = Platform::default();
    // Nothing listens.
    let closed = common::free_port();
    let started = Instant::now();
    let m = rt
        .block_on(client.process(&format!("localhost:{closed}/app:v1"), &p, &[], within(2)))
        .unwrap_err();
    assert!(m.contains(&format!("localhost:{closed}")), "{m}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let m = rt
        .block_on(client.process(&format!("localhost:{port}/app:v1"), &p, &[], within(1)))
        .unwrap_err();
    let took = started.elapsed();
    assert!(m.contains("no answer within"), "{m}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    drop(silent);
}

#[test]
fn an_oversized_config_is_refused_unkept() {
    let reg = TestRegistry::start(&dir("registry-big"), None);
    let big = format!(
        "{{\"config\": {{\"Entrypoint\": [\"/x\"]}}, \"pad\": \"{}\"}}",
        "x".repeat(2 << 20)
    );
    reg.push_config("big", "v1", big.as_bytes());
    let client = Registry::new(Some(&reg.ca)).unwrap();
    let m = runtime()
        .block_on(client.process(
            &format!("{}/big:v1", reg.host()),
            &Platform::default(),
            &[],
            within(3),
        ))
        .unwrap_err();
    assert!(m.contains("larger than 1048576 bytes"), "{m}");
}

#[test]
fn bearer_tokens_stay_with_the_registry_when_a_blob_is_redirected() {
    let config =
        serde_json::json!({"config": {"Entrypoint": ["/bearer"], "Cmd": ["x"]}}).to_string();
    let standin = StandIn::start(
        &dir("registry-standin"),
        config.as_bytes(),
        ("robot", "robot-pw"),
    );
    let client = Registry::new(Some(&standin.ca)).unwrap();
    let image = format!("localhost:{}/app:v1", standin.port);
    let creds = credential(&format!("localhost:{}", standin.port), "robot", "robot-pw");
    let got = runtime()
        .block_on(client.process(&image, &Platform::default(), &creds, within(3)))
        .unwrap();
    assert_eq!(got.entrypoint, ["/bearer"]);
    let seen = standin.seen();
    let token = seen
        .iter()
        .find(|s| s.path.starts_with("/token"))
        .expect("a token request");
    assert!(
        token.path.contains("service=standin")
            && token.path.contains("scope=repository%3Aapp%3Apull"),
        "{seen:?}"
    );
    assert!(
        token
            .authorization
            .as_deref()
            .unwrap_or("")
            .starts_with("Basic "),
        "{seen:?}"
    );
    let manifests: Vec<_> = seen
        .iter()
        .filter(|s| s.path.contains("/manifests/"))
        .collect();
    assert!(
        manifests.iter().any(|s| s
            .authorization
            .as_deref()
            .unwrap_or("")
            .starts_with("Bearer ")),
        "{seen:?}"
    );
    let store: Vec<_> = seen.iter().filter(|s| s.port == standin.other).collect();
    assert_eq!(
        store.len(),
        1,
        "the blob was fetched from the store: {seen:?}"
    );
    assert!(
        store[0].authorization.is_none(),
        "a token went to another origin: {seen:?}"
    );

    // The same image again: the token is reused (no 401, no token request), one HEAD.
    let rt = runtime();
    let again = rt
        .block_on(client.process(&image, &Platform::default(), &creds, within(3)))
        .unwrap();
    assert_eq!(again, got);
    let more: Vec<_> = standin.seen().into_iter().skip(seen.len()).collect();
    assert_eq!(more.len(), 1, "{more:?}");
    assert!(
        more[0].path.contains("/manifests/")
            && more[0]
                .authorization
                .as_deref()
                .unwrap_or("")
                .starts_with("Bearer "),
        "{more:?}"
    );
    // Without the credential, what it earned is not used: 401, and the token service refuses.
    let m = rt
        .block_on(client.process(&image, &Platform::default(), &[], within(3)))
        .unwrap_err();
    assert!(
        m.contains("token service answered HTTP 401") && m.contains("no pull Secret"),
        "{m}"
    );
}
