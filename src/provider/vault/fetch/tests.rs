//! Unit tests of login and reads (`provider/vault/fetch.rs`): retries, causes, redirects.
use super::*;
use crate::provider::vault::spec::VaultSettings;

const RENEW: &str = "POST auth/token/renew-self";

/// A standby's `307` to the (dead) active node.
fn to_another_node() -> CallError {
    CallError::Redirected {
        from: "http://vault:8200/v1/auth/token/renew-self".into(),
        to: "http://10.0.0.7:8200/v1/auth/token/renew-self".into(),
        kind: RedirectKind::AnotherNode,
    }
}

/// What a standby answers between the active node's death and its successor's election.
fn not_active() -> CallError {
    CallError::Transient {
        cause: "HTTP 500: local node not active but active cluster node not found".into(),
        retry_after: None,
    }
}

fn again(v: &Verdict) -> bool {
    matches!(v, Verdict::Again(..))
}

#[test]
fn an_election_is_retried_and_a_redirect_that_persists_is_not() {
    let streaks = RedirectStreaks::default();
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // An election: 307s, then 500s, then 307s again are one streak, retried throughout.
    let first = judge(&streaks, RENEW, &to_another_node(), at(0));
    let Verdict::Again(cause, None) = &first else {
        panic!("a redirect to another node is retried at first");
    };
    assert!(
        cause.contains("10.0.0.7") && cause.contains("not followed"),
        "{cause}"
    );
    assert!(!cause.contains("8201"), "no forwarding advice yet: {cause}");
    assert!(again(&judge(&streaks, RENEW, &not_active(), at(5))));
    assert!(again(&judge(&streaks, RENEW, &to_another_node(), at(29))));
    // Another request has its own streak.
    assert!(again(&judge(
        &streaks,
        "GET secret/data/app",
        &to_another_node(),
        at(29)
    )));
    // 30 s of nothing but redirects and outages: not an election any more.
    assert!(!again(&judge(&streaks, RENEW, &to_another_node(), at(30))));
    assert!(!again(&judge(&streaks, RENEW, &to_another_node(), at(31))));
    // An answer ends the streak: the next redirect starts a new one.
    streaks.answered(RENEW);
    assert!(again(&judge(&streaks, RENEW, &to_another_node(), at(40))));
}

#[test]
fn a_refusal_ends_a_streak_and_other_redirects_are_refused_at_once() {
    let streaks = RedirectStreaks::default();
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert!(again(&judge(&streaks, RENEW, &to_another_node(), at(0))));
    let refused = CallError::Refused {
        status: 400,
        message: "lease not found".into(),
    };
    assert!(!again(&judge(&streaks, RENEW, &refused, at(20))));
    // The active node answered at 20 s: 31 s after the first redirect is a new streak.
    assert!(again(&judge(&streaks, RENEW, &to_another_node(), at(31))));
    // A change of scheme or a second redirect is never an election's answer.
    let downgrade = CallError::Redirected {
        from: "https://vault:8200/v1/x".into(),
        to: "http://10.0.0.7:8200/v1/x".into(),
        kind: RedirectKind::Refused,
    };
    assert!(!again(&judge(&streaks, "GET x", &downgrade, at(0))));
}

#[test]
fn a_step_that_gave_up_on_redirects_is_unavailable_and_one_that_persisted_is_not() {
    // What the sidecar counts for a step that ran out of time while standbys redirected.
    let gave_up = FetchError::GaveUp {
        address: "http://vault:8200".into(),
        what: RENEW.into(),
        after: Duration::from_secs(3),
        cause: to_another_node().to_string(),
        retry_after: None,
    };
    assert_eq!(gave_up.cause(), "unavailable");
    assert!(
        !gave_up.to_string().contains("forward requests"),
        "{gave_up}"
    );
    // A redirect that persisted: `invalid_answer`, with the advice.
    let c = to_another_node();
    let request = FetchError::Request {
        address: "http://vault:8200".into(),
        method: "POST".into(),
        path: "auth/token/renew-self".into(),
        who: "role r".into(),
        status: status_of(&c),
        hint: request_hint(&c, "auth/token/renew-self"),
        error: c.to_string(),
    };
    assert_eq!(request.cause(), "invalid_answer");
    let text = request.to_string();
    assert!(
        text.contains("30 s or more") && text.contains("port 8201"),
        "{text}"
    );
    let login = FetchError::Login {
        address: "http://vault:8200".into(),
        who: "role r".into(),
        status: status_of(&c),
        hint: hint(&c, Op::Login),
        error: c.to_string(),
    };
    assert_eq!(login.cause(), "invalid_answer");
    assert!(login.to_string().contains("vault-active=true"), "{login}");
    // The advice states the threshold it is given at.
    assert_eq!(REDIRECT_PERSISTS, Duration::from_secs(30));
    assert!(REDIRECT_ADVICE.contains("30 s"));
}

#[test]
fn retrying_goes_on_through_redirects_to_another_node_and_stops_at_others() {
    let settings = VaultSettings {
        address: "http://vault:8200".into(),
        namespace: None,
        tls: Default::default(),
    };
    let client = Client::new(&settings, &ClientPolicy::default()).expect("client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let streaks = RedirectStreaks::default();
    // Two standby redirects, then the new active node answers.
    let mut answers = vec![
        Err(to_another_node()),
        Err(not_active()),
        Err(to_another_node()),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = rt.block_on(retrying(&client, &streaks, RENEW, deadline, true, |_| {
        let next = match answers.is_empty() {
            true => Ok(Response(serde_json::json!({"auth": {}}), None)),
            false => answers.remove(0),
        };
        std::future::ready(next)
    }));
    assert!(got.is_ok(), "{got:?}");
    // Redirects until the deadline: given up, as an outage.
    let deadline = Instant::now() + Duration::from_millis(600);
    let got = rt.block_on(retrying(&client, &streaks, RENEW, deadline, true, |_| {
        std::future::ready(Err(to_another_node()))
    }));
    match got {
        Err(Failure::GaveUp(e)) => assert_eq!(e.cause(), "unavailable"),
        other => panic!("expected to give up: {other:?}"),
    }
    // A redirect that changes the scheme: not retried at all.
    let mut calls = 0;
    let got = rt.block_on(retrying(&client, &streaks, "GET x", deadline, true, |_| {
        calls += 1;
        std::future::ready(Err(CallError::Redirected {
            from: "http://vault:8200/v1/x".into(),
            to: "https://10.0.0.7:8200/v1/x".into(),
            kind: RedirectKind::Refused,
        }))
    }));
    assert!(matches!(
        got,
        Err(Failure::Call(CallError::Redirected { .. }))
    ));
    assert_eq!(calls, 1);
}
