use super::*;
use crate::provider::vault::spec::Output;

fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (format!("vault.hashicorp.com/{k}"), v.to_string()))
        .collect()
}

fn env() -> VaultEnv {
    VaultEnv {
        addr: Some("https://vault.example:8200".into()),
        ..Default::default()
    }
}

fn parsed(pairs: &[(&str, &str)]) -> Result<AgentPod, String> {
    let all = ann(pairs);
    let prefix = prefix_of(&all).ok_or("no prefix")?;
    parse(Path::new("pod"), &all, prefix, &env(), &|_| String::new()).map_err(|e| e.to_string())
}

fn base<'a>(more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![("agent-inject", "true"), ("role", "app")];
    v.extend_from_slice(more);
    v
}

#[test]
fn file_names_follow_the_injector() {
    let p = parsed(&base(&[
        ("agent-inject-secret-DB-Creds", "database/creds/app"),
        ("agent-inject-secret-Keep", "secret/keep"),
        ("preserve-secret-case-Keep", "true"),
        ("agent-inject-secret-nested", "secret/n"),
        ("agent-inject-file-nested", "/conf/./app/../db.env"),
    ]))
    .unwrap();
    let names: Vec<&str> = p.specs[0].objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["db-creds", "Keep", "conf/db.env"]);
    assert!(p.specs[0].objects.iter().all(|o| o.mode == 0o644));
    assert_eq!(p.volume_path, "/vault/secrets");
}

#[test]
fn default_templates_are_the_injectors() {
    let p = parsed(&base(&[("agent-inject-secret-a", "secret/app")])).unwrap();
    let Output::GoTemplate(t) = &p.specs[0].objects[0].output else {
        panic!("not a Go template")
    };
    assert_eq!(
        t.source,
        "{{ with secret \"secret/app\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}"
    );
    let p = parsed(&base(&[
        ("agent-inject-secret-a", "secret/app"),
        ("agent-inject-default-template", "JSON"),
    ]))
    .unwrap();
    let Output::GoTemplate(t) = &p.specs[0].objects[0].output else {
        panic!("not a Go template")
    };
    assert_eq!(
        t.source,
        "{{ with secret \"secret/app\" }}{{ .Data | toJSON }}\n{{ end }}"
    );
    assert_eq!(
        p.specs[0].reads,
        vec![Read {
            path: "secret/app".into(),
            method: "GET".into(),
            body: None,
            template: true
        }]
    );
}

#[test]
fn perms_and_paths_are_checked() {
    let p = parsed(&base(&[
        ("agent-inject-secret-a", "secret/a"),
        ("agent-inject-perms-a", "0400"),
        ("agent-inject-secret-b", "secret/b"),
        ("agent-inject-perms-b", "640"),
        ("secret-volume-path-b", "/etc/b/"),
    ]))
    .unwrap();
    assert_eq!(p.specs[0].objects[0].mode, 0o400);
    assert_eq!(p.specs[1].objects[0].mode, 0o640);
    assert_eq!(p.custom_paths, ["/etc/b"]);
    for (k, v, says) in [
        ("agent-inject-perms-a", "0999", "agent-inject-perms-a"),
        ("agent-inject-perms-a", "01777", "at most 0777"),
        (
            "agent-inject-file-a",
            "../../etc/passwd",
            "leaves the secrets directory",
        ),
        ("secret-volume-path-a", "relative", "absolute path"),
        ("agent-inject-command-a", "kill -HUP 1", "notify-signal"),
        ("agent-configmap", "cm", "ConfigMap"),
        (
            "agent-inject-template-file-a",
            "/vault/configs/a",
            "agent-inject-template-<name>",
        ),
        ("agent-made-up", "1", "not an annotation"),
        ("auth-type", "aws", "kubernetes and jwt"),
        ("agent-pre-populate-only", "yes", "not a boolean"),
    ] {
        let e = parsed(&base(&[("agent-inject-secret-a", "secret/a"), (k, v)])).unwrap_err();
        assert!(e.contains(says), "{k}={v}: {e}");
        assert!(
            e.contains(&format!(
                "vault.hashicorp.com/{}",
                k.split('-').next().unwrap()
            )),
            "{e}"
        );
    }
}

#[test]
fn role_and_address_are_required() {
    let all = ann(&[("agent-inject", "true"), ("agent-inject-secret-a", "s/a")]);
    let e = parse(
        Path::new("pod"),
        &all,
        "vault.hashicorp.com/",
        &env(),
        &|_| String::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("vault.hashicorp.com/role"), "{e}");
    let p = parsed(&base(&[
        ("agent-inject-secret-a", "s/a"),
        ("auth-config-role", "other"),
        ("auth-path", "auth/k8s-west"),
        ("service", "https://bao.internal:8200"),
        ("namespace", "team-a"),
    ]))
    .unwrap();
    assert_eq!(p.address, "https://bao.internal:8200");
    assert_eq!(p.specs[0].vault.namespace.as_deref(), Some("team-a"));
    let Auth::Kubernetes(login) = &p.specs[0].auth else {
        panic!("not kubernetes")
    };
    assert_eq!(
        (login.mount.as_str(), login.role.as_str()),
        ("k8s-west", "app")
    );
}

#[test]
fn openbao_prefixes_and_mixtures() {
    let all: BTreeMap<String, String> = [
        ("openbao.openbao.org/agent-inject", "true"),
        ("openbao.openbao.org/role", "r"),
        ("openbao.openbao.org/agent-inject-secret-x", "kv/x"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let prefix = prefix_of(&all).unwrap();
    let p = parse(Path::new("pod"), &all, prefix, &env(), &|_| String::new()).unwrap();
    assert_eq!(p.volume_path, "/openbao/secrets");
    let mut mixed = all.clone();
    mixed.insert("vault.hashicorp.com/role".into(), "r".into());
    let e = parse(Path::new("pod"), &mixed, prefix, &env(), &|_| String::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("one prefix"), "{e}");
}

#[test]
fn the_token_file_sits_beside_the_secrets() {
    let p = parsed(&base(&[
        ("agent-inject-secret-a", "secret/a"),
        ("agent-inject-token", "true"),
    ]))
    .unwrap();
    let token = p.specs[0]
        .objects
        .iter()
        .find(|o| o.name == "token")
        .unwrap();
    assert_eq!(
        (token.output.clone(), token.mode),
        (Output::VaultToken, 0o640)
    );
    let e = parsed(&base(&[
        ("agent-inject-secret-a", "secret/a"),
        ("secret-volume-path-a", "/elsewhere"),
        ("agent-inject-token", "true"),
    ]))
    .unwrap_err();
    assert!(e.contains("no secret is written in /vault/secrets"), "{e}");
}

#[test]
fn go_durations() {
    assert_eq!(
        parse_go_duration("1h30m"),
        Some(std::time::Duration::from_secs(5400))
    );
    assert_eq!(
        parse_go_duration("30s"),
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(
        parse_go_duration("1.5m"),
        Some(std::time::Duration::from_secs(90))
    );
    assert_eq!(parse_go_duration("5"), None);
    assert_eq!(parse_go_duration("5x"), None);
}
