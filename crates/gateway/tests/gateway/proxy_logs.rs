//! nginx in front of the gateways, with the production configuration, never
//! writes a token into its logs, even when gateways fail the requests that
//! carry one in the query string: nginx puts the client's request line into
//! every error message about a request.

use notify_testkit::nginx::Nginx;
use notify_testkit::process::free_port;
use notify_testkit::token;
use notify_testkit::ws::WsClient;

use crate::helpers::*;

#[actix_web::test]
async fn nginx_logs_no_token_when_gateways_fail() {
    let cluster = Cluster::start().await;
    let mut healthy = cluster.gateway().await;
    // Answers every upgrade with 503, as a full or draining node does.
    let full = cluster.gateway_with(|c| c.limits.max_connections = 0).await;
    // Nothing listens here: a gateway that is down.
    let down = free_port();
    let api_port = cluster.api.rsplit(':').next().unwrap().parse().unwrap();
    let mut nginx = Nginx::start(&[healthy.port, full.port, down], api_port).await;
    let base = format!("ws://127.0.0.1:{}/ws", nginx.port);

    let mut tokens = vec![token("ann")];
    let mut connected = WsClient::connect(&format!("{base}?token={}", tokens[0]), &[])
        .await
        .expect("nginx retries the failed gateways on the healthy one");
    assert_eq!(connected.text().await["type"], "welcome");
    healthy.shut_down().await;
    assert_eq!(connected.closed().await.0, Some(1012));
    // Every gateway now fails: refused connections (502), 503s, and then no
    // live upstream at all.
    for after in 1..=3 {
        let token = token("ann");
        let refused = WsClient::connect(&format!("{base}?token={token}&after={after}"), &[]).await;
        assert!(
            matches!(refused.as_ref().err(), Some(502 | 503)),
            "{:?}",
            refused.err()
        );
        tokens.push(token);
    }

    let logs = nginx.stop().await;
    for (path, text) in &logs {
        for line in text.lines() {
            let leaked = line.contains("token=")
                || tokens.iter().any(|t| {
                    line.contains(t.as_str()) || line.contains(t.rsplit('.').next().unwrap())
                });
            assert!(!leaked, "{} logs a token: {line}", path.display());
        }
    }

    let (_, access) = logs
        .iter()
        .find(|(path, _)| path.ends_with("nginx-access.log"))
        .expect("an access log");
    // What operators get instead of error messages: each request with its
    // status and every gateway it tried with that gateway's answer.
    assert!(access.contains("\"GET /ws\" 101 "), "{access}");
    let answers = upstream_answers(access);
    for (gateway, status) in [(down, "502"), (full.port, "503")] {
        let answer = (format!("127.0.0.1:{gateway}"), status.to_owned());
        assert!(answers.contains(&answer), "{answer:?} not in {access}");
    }
}

/// (gateway address, its status) for every gateway an access log line says
/// a request tried: the line ends with `"addr, addr" "status, status" "..."`.
fn upstream_answers(access_log: &str) -> Vec<(String, String)> {
    access_log
        .lines()
        .flat_map(|line| {
            let quoted: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
            let [_, addrs, statuses, ..] = quoted[..] else {
                panic!("not the notify_access format: {line}");
            };
            addrs
                .split(", ")
                .zip(statuses.split(", "))
                .map(|(a, s)| (a.to_owned(), s.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}
