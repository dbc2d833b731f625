//! Unit tests of the pure pod mutation (`webhook/mutate.rs`).
use super::*;
use crate::webhook::patch;

fn pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
        "spec": {
            "serviceAccountName": "mycsiserviceaccount",
            "initContainers": [{"name": "istio-init", "image": "istio/proxyv2"}, {"name": "migrate", "image": "app"}],
            "containers": [{"name": "app", "image": "nginx"}, {"name": "logger", "image": "busybox"}]
        }
    })
}

fn opted_in() -> Value {
    json!({
        "secretdrop.dev/inject": "true",
        "secretdrop.dev/role": "mycsirole",
        "secretdrop.dev/objects": "- {objectName: myPassword, secretPath: secret/data/app, secretKey: password}\n",
    })
}

fn defaults() -> Defaults {
    Defaults {
        vault_address: Some("http://vault.vault:8200".into()),
        ..Defaults::default()
    }
}

#[test]
fn pods_without_the_opt_in_are_left_alone() {
    assert_eq!(
        mutate(&pod(json!({})), &defaults()),
        Decision::Skip("not opted in")
    );
    let mut a = opted_in();
    a["secretdrop.dev/inject"] = json!("false");
    assert_eq!(mutate(&pod(a), &defaults()), Decision::Skip("not opted in"));
}

#[test]
fn sidecar_mode_injects_a_native_sidecar_after_the_mesh_and_before_other_init_containers() {
    let Decision::Inject { pod: out, mode } = mutate(&pod(opted_in()), &defaults()) else {
        panic!()
    };
    assert_eq!(mode, Mode::Sidecar);
    let inits: Vec<&str> = out["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(inits, ["istio-init", "secretdrop", "migrate"]);
    let ours = &out["spec"]["initContainers"][1];
    assert_eq!(ours["restartPolicy"], "Always");
    assert_eq!(ours["startupProbe"]["exec"]["command"][1], "probe");
    assert_eq!(ours["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(ours["env"][0]["value"], "http://vault.vault:8200");
    // Later init containers and every app container see the files read-only.
    for c in [
        &out["spec"]["initContainers"][2],
        &out["spec"]["containers"][0],
        &out["spec"]["containers"][1],
    ] {
        assert!(c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/mnt/secrets" && m["readOnly"] == true));
    }
    assert!(
        out["spec"]["initContainers"][0]
            .get("volumeMounts")
            .is_none(),
        "the mesh init container is untouched"
    );
    assert_eq!(
        out["metadata"]["annotations"]["secretdrop.dev/status"],
        "injected"
    );
    // Injecting the injected pod changes nothing.
    assert_eq!(
        mutate(&out, &defaults()),
        Decision::Skip("already injected")
    );
    // The patch turns the original into the injected pod.
    let ops = patch::diff(&pod(opted_in()), &out);
    assert_eq!(patch::apply(&pod(opted_in()), &ops).unwrap(), out);
}

#[test]
fn init_mode_and_selected_containers() {
    let mut a = opted_in();
    a["secretdrop.dev/mode"] = json!("init");
    a["secretdrop.dev/containers"] = json!("app");
    a["secretdrop.dev/mount-path"] = json!("/vault/secrets");
    let Decision::Inject { pod: out, .. } = mutate(&pod(a), &defaults()) else {
        panic!()
    };
    let ours = &out["spec"]["initContainers"][1];
    assert_eq!(ours["name"], "secretdrop-init");
    assert_eq!(ours["args"][0], "init");
    assert!(ours.get("restartPolicy").is_none());
    assert!(out["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/vault/secrets");
    assert!(
        out["spec"]["containers"][1].get("volumeMounts").is_none(),
        "logger was not selected"
    );
}

#[test]
fn init_plus_sidecar_adds_a_regular_sidecar_container() {
    let mut a = opted_in();
    a["secretdrop.dev/mode"] = json!("init+sidecar");
    let Decision::Inject { pod: out, .. } = mutate(&pod(a), &defaults()) else {
        panic!()
    };
    let last = out["spec"]["containers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["name"], "secretdrop");
    assert_eq!(last["args"][0], "sidecar");
    assert!(last.get("restartPolicy").is_none());
}

#[test]
fn the_state_volume_is_memory_and_mounted_only_into_secretdrop() {
    let mut a = opted_in();
    a["secretdrop.dev/mode"] = json!("init+sidecar");
    let Decision::Inject { pod: out, .. } = mutate(&pod(a), &defaults()) else {
        panic!()
    };
    let volume = crate::webhook::named(&out["spec"]["volumes"], STATE_VOLUME);
    assert_eq!(volume["emptyDir"]["medium"], "Memory");
    let all: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| out["spec"][k].as_array().unwrap())
        .collect();
    let mounts_state = |c: &Value| {
        c["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["name"] == STATE_VOLUME))
    };
    for c in all {
        let ours = c["name"] == CONTAINER || c["name"] == INIT_CONTAINER;
        assert_eq!(mounts_state(c), ours, "{}", c["name"]);
        if ours {
            let args: Vec<&str> = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(args.windows(2).any(|w| w == ["--state-dir", STATE_DIR]));
            assert!(
                !STATE_DIR.starts_with(DIR),
                "the state is never inside --dir"
            );
            let mount = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == STATE_VOLUME)
                .unwrap();
            // Kubelet makes the emptyDir 0777, which --state-dir refuses: secretdrop is
            // pointed at a subdirectory it creates, 0700, one level below the mount.
            assert_eq!(mount["mountPath"], STATE_MOUNT);
            assert!(mount.get("readOnly").is_none() && mount.get("subPath").is_none());
            assert_eq!(
                std::path::Path::new(STATE_DIR).parent(),
                Some(std::path::Path::new(STATE_MOUNT))
            );
        }
    }
}

/// A huge value is quoted cut to 64 characters: the rejection names the annotation and
/// stays short, whatever the pod's author sent (or named its containers).
#[test]
fn rejections_quote_huge_values_cut_short() {
    let huge = "x".repeat(100_000);
    let cut = format!("\"{}...\"", "x".repeat(64));
    let cases = [
        ("secretdrop.dev/mode", huge.clone()),
        ("secretdrop.dev/containers", format!("app,{huge}")),
        ("secretdrop.dev/mount-path", huge.clone()),
    ];
    for (key, value) in cases {
        let mut a = opted_in();
        a[key] = json!(value);
        let Decision::Reject(m) = mutate(&pod(a), &defaults()) else {
            panic!("{key}: not rejected");
        };
        assert!(m.starts_with(key) && m.contains(&cut), "{key}: {m:.300}");
        assert!(m.len() < 400, "{key}: a {} byte message", m.len());
    }
    // The pod's own container names, listed in the message, are cut the same way.
    let mut a = opted_in();
    a["secretdrop.dev/containers"] = json!("nope");
    let mut p = pod(a);
    for (i, c) in p["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        c["name"] = json!(format!("{i}{huge}"));
    }
    let Decision::Reject(m) = mutate(&p, &defaults()) else {
        panic!("not rejected");
    };
    assert!(
        m.contains("no container \"nope\"") && m.contains("0xxx"),
        "{m:.300}"
    );
    assert!(m.len() < 400, "a {} byte message", m.len());
    // An env pod whose huge-named container has no command.
    let mut a = opted_in();
    a["secretdrop.dev/env"] = json!("P=myPassword");
    let mut p = pod(a);
    p["spec"]["containers"][0]["name"] = json!(huge);
    let Decision::Reject(m) = mutate(&p, &defaults()) else {
        panic!("not rejected");
    };
    assert!(m.contains("has no command") && m.contains(&cut), "{m:.300}");
    assert!(m.len() < 1000, "a {} byte message", m.len());
}

#[test]
fn invalid_annotations_reject_the_pod_with_a_clear_message() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "secretdrop.dev/mode",
            json!("daemon"),
            "allowed are sidecar, init, init+sidecar",
        ),
        (
            "secretdrop.dev/objects",
            json!("- objectName: [unclosed"),
            "secretdrop.dev/objects",
        ),
        (
            "secretdrop.dev/objects",
            json!("- {objectName: ../x, secretPath: s, secretKey: k}"),
            "traverses",
        ),
        (
            "secretdrop.dev/vault-address",
            json!("http://evil.example:8200"),
            "not allowed by this webhook",
        ),
        (
            "secretdrop.dev/containers",
            json!("app,nope"),
            "no container \"nope\"",
        ),
        ("secretdrop.dev/rolle", json!("x"), "unknown annotation"),
        (
            "secretdrop.dev/mount-path",
            json!("relative"),
            "absolute path",
        ),
    ];
    let d = Defaults {
        allowed_vault_addresses: vec!["http://vault.vault:8200".into()],
        ..defaults()
    };
    for (key, value, want) in cases {
        let mut a = opted_in();
        a[key] = value;
        match mutate(&pod(a), &d) {
            Decision::Reject(m) => assert!(m.contains(want), "{key}: {m}"),
            other => panic!("{key}: {other:?}"),
        }
    }
    let mut a = opted_in();
    a.as_object_mut().unwrap().remove("secretdrop.dev/role");
    assert!(
        matches!(mutate(&pod(a), &d), Decision::Reject(m) if m.contains("secretdrop.dev/role"))
    );
}

#[test]
fn env_wraps_the_selected_containers_command_and_copies_the_binary_first() {
    let mut a = opted_in();
    a["secretdrop.dev/objects"] = json!("- {objectName: myPassword, secretPath: secret/data/app, secretKey: password}\n- {objectName: app.env, secretPath: secret/data/app, secretKey: dotenv}\n");
    a["secretdrop.dev/env"] = json!("DB_PASSWORD=myPassword, PRICE=myPassword");
    a["secretdrop.dev/env-file"] = json!("app.env");
    a["secretdrop.dev/containers"] = json!("app");
    a["secretdrop.dev/mount-path"] = json!("/mnt/$ecrets");
    let mut p = pod(a);
    p["spec"]["containers"][0]["command"] = json!(["/app/server", "--port=$(PORT)"]);
    p["spec"]["containers"][0]["args"] = json!(["-v"]);
    let Decision::Inject { pod: out, .. } = mutate(&p, &defaults()) else {
        panic!()
    };
    let app = &out["spec"]["containers"][0];
    assert_eq!(
        app["command"],
        json!([
            "/secretdrop-bin/bin/secretdrop",
            "exec",
            "--dir",
            "/mnt/$$ecrets",
            "--env",
            "DB_PASSWORD=myPassword",
            "--env",
            "PRICE=myPassword",
            "--env-file",
            "app.env",
            "--",
            "/app/server",
            "--port=$(PORT)"
        ])
    );
    assert_eq!(
        app["args"],
        json!(["-v"]),
        "args follow the command unchanged"
    );
    assert!(app["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == BIN_VOLUME && m["readOnly"] == true));
    let logger = &out["spec"]["containers"][1];
    assert!(logger.get("command").is_none(), "not selected, not wrapped");
    let inits: Vec<&str> = out["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        inits,
        ["istio-init", "secretdrop-copy", "secretdrop", "migrate"]
    );
    let copy = &out["spec"]["initContainers"][1];
    assert_eq!(
        copy["args"],
        json!(["copy-self", "--dir", "/secretdrop-bin/bin"])
    );
    assert!(copy.get("env").is_none() && copy.get("restartPolicy").is_none());
    assert_eq!(copy["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(out["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == BIN_VOLUME && v["emptyDir"]["medium"] == "Memory"));
    assert_eq!(
        mutate(&out, &defaults()),
        Decision::Skip("already injected")
    );
}

#[test]
fn env_rejects_containers_without_command_and_unknown_objects() {
    let mut a = opted_in();
    a["secretdrop.dev/env"] = json!("DB_PASSWORD=myPassword");
    match mutate(&pod(a.clone()), &defaults()) {
        Decision::Reject(m) => assert!(
            m.contains("container \"app\" has no command")
                && m.contains("does not read the image's entrypoint")
                && m.contains("set command"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    let mut p = pod(a.clone());
    for c in p["spec"]["containers"].as_array_mut().unwrap() {
        c["command"] = json!(["/bin/app"]);
    }
    assert!(matches!(mutate(&p, &defaults()), Decision::Inject { .. }));
    for (env, want) in [
        (
            "DB_PASSWORD=nope",
            "no object \"nope\" in secretdrop.dev/objects",
        ),
        ("1X=myPassword", "not a valid variable name"),
        ("DB_PASSWORD", "expected NAME=OBJECT"),
        ("", "nothing to set"),
    ] {
        p["metadata"]["annotations"]["secretdrop.dev/env"] = json!(env);
        match mutate(&p, &defaults()) {
            Decision::Reject(m) => assert!(m.contains(want), "{env}: {m}"),
            other => panic!("{env}: {other:?}"),
        }
    }
}

#[test]
fn a_spec_of_the_wrong_shape_is_rejected_not_edited() {
    for (spec, want) in [
        (json!(5), "spec is not an object"),
        (
            json!({"containers": [5]}),
            "spec.containers[0] is not an object",
        ),
        (
            json!({"initContainers": [[]]}),
            "spec.initContainers[0] is not an object",
        ),
        (json!({"volumes": "x"}), "spec.volumes is not a list"),
        (
            json!({"containers": [{"name": "a", "volumeMounts": {}}]}),
            "spec.containers[0].volumeMounts is not a list",
        ),
    ] {
        let mut p = pod(opted_in());
        p["spec"] = spec;
        match mutate(&p, &defaults()) {
            Decision::Reject(m) => assert_eq!(m, want),
            other => panic!("{want}: {other:?}"),
        }
    }
}

#[test]
fn container_selection_is_linear_in_the_number_of_containers() {
    // 30 000 containers, every one named in the annotation (as many as fit in the API
    // server's 256 KiB of annotations): nested scans took minutes.
    let n = 30_000;
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let mut a = opted_in();
    a["secretdrop.dev/containers"] = json!(names.join(","));
    let mut p = pod(a);
    p["spec"]["containers"] = names.iter().map(|c| json!({"name": c})).collect();
    let started = std::time::Instant::now();
    let Decision::Inject { pod: out, .. } = mutate(&p, &defaults()) else {
        panic!()
    };
    let took = started.elapsed();
    let mounted = out["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["volumeMounts"][0]["name"] == SECRETS_VOLUME)
        .count();
    assert_eq!(mounted, n);
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");

    // A name missing from 30 000: the message names it and stays short.
    p["metadata"]["annotations"]["secretdrop.dev/containers"] =
        json!(format!("{},nope", names.join(",")));
    let Decision::Reject(m) = mutate(&p, &defaults()) else {
        panic!()
    };
    assert!(
        m.contains("no container \"nope\"") && m.contains(&format!("({n} in all)")),
        "{m}"
    );
    assert!(m.len() < 300, "{m}");
}

#[test]
fn a_vault_agent_pod_is_converted_only_through_its_own_path() {
    let seed = include_str!("../../../fuzz/seeds/admission/vault-agent.json");
    let review: Value = serde_json::from_str(seed).unwrap();
    let pod = &review["request"]["object"];
    // The webhook's default audience is for its own pods, not for converted ones.
    let d = Defaults {
        token_audience: Some("vault".into()),
        ..defaults()
    };
    assert_eq!(mutate(pod, &d), Decision::Skip("not opted in"));
    let Decision::Inject {
        pod: injected,
        mode,
    } = convert_agent(pod, "team", &d)
    else {
        panic!("{:?}", convert_agent(pod, "team", &d))
    };
    assert_eq!(mode, Mode::Sidecar);
    let spec = &injected["spec"];
    assert_eq!(spec["shareProcessNamespace"], true);
    let app_mounts: Vec<&str> = spec["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(app_mounts, ["/vault/secrets", "/etc/db"]);
    let ours = &spec["initContainers"][0];
    assert_eq!(ours["securityContext"]["runAsUser"], 100);
    let args: Vec<&str> = ours["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2).any(|w| w
            == [
                "--volume",
                "secretdrop-custom-0=/mnt/secretdrop-custom/secretdrop-custom-0"
            ]),
        "{args:?}"
    );
    let a = &injected["metadata"]["annotations"];
    assert_eq!(a["secretdrop.dev/vault-agent"], "vault.hashicorp.com/");
    assert_eq!(a["vault.hashicorp.com/agent-inject-status"], "injected");
    // The token volume has no audience: the role expects the pod's own token's.
    let token = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == TOKEN_VOLUME)
        .unwrap();
    assert!(
        token["projected"]["sources"][0]["serviceAccountToken"]
            .get("audience")
            .is_none(),
        "{token}"
    );
    // Once converted, it is left alone.
    assert_eq!(
        convert_agent(&injected, "team", &d),
        Decision::Skip("already injected")
    );
}
