use awc::http::StatusCode;
use notify_api::limits::{FailureRate, Rate};

use crate::helpers::*;

const BODY: &str = r#"{"recipients":["alice"],"title":"t","message":"m"}"#;

#[actix_web::test]
async fn an_api_key_over_its_rate_gets_429_and_stores_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.per_key = Rate {
            per_second: 1,
            burst: 2,
        }
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            app.send("/v1/notifications", BODY).await.status,
            StatusCode::ACCEPTED
        );
    }
    for path in ["/v1/notifications", "/webhook/notify"] {
        let body = if path == "/webhook/notify" {
            r#"{"recipientId":"alice","message":"m"}"#
        } else {
            BODY
        };
        let refused = app.send(path, body).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(refused.code(), "rate_limited");
        let retry: u64 = refused
            .headers
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "{retry}");
    }
    assert_eq!(app.rows().await, 2);
    // Another sender is not affected.
    let other = app
        .request(
            "POST",
            "/v1/notifications",
            &[("x-api-key", SECOND_API_KEY)],
            Some(BODY),
        )
        .await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
    assert_eq!(app.rows().await, 3);
}

#[actix_web::test]
async fn a_user_over_their_rate_gets_429() {
    let app = TestApp::spawn_with(|c| {
        c.per_user = Rate {
            per_second: 1,
            burst: 2,
        }
    })
    .await;
    app.notify(&["alice"], "x").await;
    for _ in 0..2 {
        let ok = app.as_user("alice", "GET", "/api/notifications").await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    let refused = app
        .as_user("alice", "PUT", "/api/notifications/read-all")
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "rate_limited");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM notifications WHERE read_at IS NULL")
            .await,
        1,
        "the refused read-all changed rows"
    );
    let bob = app.as_user("bob", "GET", "/api/notifications").await;
    assert_eq!(bob.status, StatusCode::OK);
}

#[actix_web::test]
async fn responses_carry_security_headers() {
    let app = TestApp::spawn().await;
    let ok = app.request("GET", "/health", &[], None).await;
    let refused = app.send("/v1/notifications", "{").await;
    let missing = app.request("GET", "/nope", &[], None).await;
    for reply in [ok, refused, missing] {
        assert_eq!(
            reply.headers.get("x-content-type-options").unwrap(),
            "nosniff"
        );
        assert_eq!(reply.headers.get("x-frame-options").unwrap(), "DENY");
        assert_eq!(reply.headers.get("cache-control").unwrap(), "no-store");
        assert!(reply.headers.contains_key("content-security-policy"));
        assert_eq!(reply.headers.get("referrer-policy").unwrap(), "no-referrer");
    }
}

#[actix_web::test]
async fn a_client_trickling_its_headers_is_dropped_while_others_are_served() {
    let app = TestApp::spawn().await;
    let addr = app.addr.trim_start_matches("http://").parse().unwrap();
    let slow = notify_testkit::slowloris(
        addr,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    );
    let served = async {
        app.notify(&["alice"], "meanwhile").await;
        assert_eq!(app.rows().await, 1);
    };
    let (held, ()) = tokio::join!(slow, served);
    println!("a one-byte-a-second client was dropped after {held:?}");
}

/// A client that sends its head at once and then trickles the body gets
/// 408 after 5 s; nothing is stored and others are served meanwhile.
#[actix_web::test]
async fn a_client_trickling_its_body_gets_408_and_stores_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let body = r#"{"recipients":["alice"],"title":"t","message":"slow"}"#;
    let head = format!(
        "POST /v1/notifications HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(app.addr.trim_start_matches("http://"))
        .await
        .unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let slow = async {
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        for byte in body.bytes() {
            assert!(started.elapsed() < std::time::Duration::from_secs(20));
            let _ = socket.write_all(&[byte]).await;
            match tokio::time::timeout(std::time::Duration::from_millis(500), socket.read(&mut buf))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.ends_with(b"}}") {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    };
    let served = async {
        app.notify(&["bob"], "meanwhile").await;
    };
    let (answer, ()) = tokio::join!(slow, served);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert_eq!(app.rows().await, 1);
}

#[actix_web::test]
async fn cors_answers_only_configured_origins() {
    const ALLOWED: &str = "https://app.example.com";
    let app = TestApp::spawn_with(|c| c.cors_origins = vec![ALLOWED.into()]).await;
    let app = &app;
    let preflight = move |origin: &'static str| async move {
        app.request(
            "OPTIONS",
            "/api/notifications",
            &[
                ("origin", origin),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization"),
            ],
            None,
        )
        .await
    };
    let allowed = preflight(ALLOWED).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        allowed.headers.get("access-control-allow-origin").unwrap(),
        ALLOWED
    );
    let other = preflight("https://evil.example.com").await;
    assert!(other.headers.get("access-control-allow-origin").is_none());
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert_eq!(other.code(), "cors_refused");

    let auth = &format!("Bearer {}", app.token("alice"));
    let get = move |origin: &'static str| async move {
        app.request(
            "GET",
            "/api/notifications",
            &[("origin", origin), ("authorization", auth)],
            None,
        )
        .await
    };
    let reply = get(ALLOWED).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers.get("access-control-allow-origin").unwrap(),
        ALLOWED
    );
    // Another origin's request is served without CORS headers, so a browser
    // does not hand the answer to that page; non-browser clients are unaffected.
    let reply = get("https://evil.example.com").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get("access-control-allow-origin").is_none());
    // An allowed origin asking for a method that is not offered.
    let trace = app
        .request(
            "OPTIONS",
            "/api/notifications",
            &[
                ("origin", ALLOWED),
                ("access-control-request-method", "TRACE"),
            ],
            None,
        )
        .await;
    assert_eq!(trace.status, StatusCode::FORBIDDEN);
    assert_eq!(trace.code(), "cors_refused");
    assert_eq!(
        app.metric(r#"notify_api_refusals_total{code="cors_refused"}"#)
            .await,
        2
    );

    // Without configured origins no response carries CORS headers.
    let closed = TestApp::spawn().await;
    let reply = closed
        .request(
            "OPTIONS",
            "/api/notifications",
            &[
                ("origin", ALLOWED),
                ("access-control-request-method", "GET"),
            ],
            None,
        )
        .await;
    assert!(reply.headers.get("access-control-allow-origin").is_none());
}

/// Answers a request whose head promises a body that never comes: a
/// refusal before the body is read arrives at once, anything else only
/// after the body timeout.
async fn answer_without_body(app: &TestApp, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(app.addr.trim_start_matches("http://"))
        .await
        .unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !answer.ends_with(b"}}") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), read)
        .await
        .expect("answered before the body timeout");
    String::from_utf8_lossy(&answer).into_owned()
}

fn retry_after(reply: &Reply) -> u64 {
    reply
        .headers
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[actix_web::test]
async fn wrong_api_keys_are_limited_per_client_address() {
    let app = TestApp::spawn_with(|c| {
        c.credential_failures = FailureRate {
            per_minute: 1,
            burst: 3,
        }
    })
    .await;
    let attacker = "198.51.100.7";
    let send_from = |address: &'static str, key: &'static str| {
        let app = &app;
        async move {
            app.request(
                "POST",
                "/v1/notifications",
                &[("x-forwarded-for", address), ("x-api-key", key)],
                Some(BODY),
            )
            .await
        }
    };
    for _ in 0..3 {
        let reply = send_from(attacker, "wrong-key-of-24-characters").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.code(), "invalid_api_key");
    }
    let over = send_from(attacker, "wrong-key-of-24-characters").await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.code(), "rate_limited");
    assert!((1..=60).contains(&retry_after(&over)));

    // While limited, the right key is refused too, on every route that
    // takes one, and in the body of a webhook as well.
    let right = send_from(attacker, API_KEY).await;
    assert_eq!(
        right.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        right.body
    );
    assert_eq!(right.code(), "rate_limited");
    let in_body = app
        .request(
            "POST",
            "/webhook/notify",
            &[("x-forwarded-for", attacker)],
            Some(&format!(
                r#"{{"recipientId":"alice","message":"m","apiKey":"{API_KEY}"}}"#
            )),
        )
        .await;
    assert_eq!(in_body.status, StatusCode::TOO_MANY_REQUESTS);
    let status = app
        .request(
            "GET",
            "/v1/notifications/1",
            &[("x-forwarded-for", attacker), ("x-api-key", API_KEY)],
            None,
        )
        .await;
    assert_eq!(status.status, StatusCode::TOO_MANY_REQUESTS);
    // Refused before its body is even waited for.
    let answer = answer_without_body(
        &app,
        &format!(
            "POST /webhook/notify HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: {attacker}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert_eq!(app.rows().await, 0);

    // Other clients are not affected: the right key works, a wrong one is
    // an ordinary 401.
    let other = send_from("198.51.100.8", API_KEY).await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "{}", other.body);
    let wrong = send_from("198.51.100.8", "wrong-key-of-24-characters").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.send("/v1/notifications", BODY).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.rows().await, 2);
}

#[actix_web::test]
async fn wrong_keys_in_bodies_and_wrong_signatures_count_as_failures() {
    let app = TestApp::spawn_with(|c| {
        c.credential_failures = FailureRate {
            per_minute: 1,
            burst: 2,
        }
    })
    .await;
    let webhook = r#"{"recipientId":"alice","message":"m","apiKey":"wrong-key-of-24-characters"}"#;
    let expected = [
        (StatusCode::UNAUTHORIZED, "invalid_api_key"),
        (StatusCode::UNAUTHORIZED, "invalid_api_key"),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
    ];
    for (status, code) in expected {
        let reply = app
            .request(
                "POST",
                "/webhook/notify",
                &[("x-forwarded-for", "192.0.2.10")],
                Some(webhook),
            )
            .await;
        assert_eq!((reply.status, reply.code()), (status, code));
    }

    let body = r#"{"recipientId":"alice","message":"m"}"#;
    let now = now_secs();
    let expected = [
        (StatusCode::UNAUTHORIZED, "invalid_signature"),
        (StatusCode::UNAUTHORIZED, "invalid_signature"),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
    ];
    for (i, (status, code)) in expected.into_iter().enumerate() {
        let id = format!("forged-{i}");
        // Signed with a secret the api does not know.
        let signature = notify_auth::webhook::sign(
            CRM_SECRET.replace('Y', "Z").as_str(),
            &id,
            now,
            body.as_bytes(),
        )
        .unwrap();
        let reply = app
            .request(
                "POST",
                "/webhook/notify",
                &[
                    ("x-forwarded-for", "192.0.2.11"),
                    ("webhook-id", &id),
                    ("webhook-timestamp", &now.to_string()),
                    ("webhook-signature", &signature),
                ],
                Some(body),
            )
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{}",
            reply.body
        );
    }
    assert_eq!(app.rows().await, 0);
}

/// Behind no trusted proxy, `X-Forwarded-For` is the client's own claim:
/// changing it does not escape the limit.
#[actix_web::test]
async fn forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit() {
    let app = TestApp::spawn_with(|c| {
        c.credential_failures = FailureRate {
            per_minute: 1,
            burst: 2,
        };
        c.trusted_proxies = Vec::new();
    })
    .await;
    for (i, expected) in [
        StatusCode::UNAUTHORIZED,
        StatusCode::UNAUTHORIZED,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::TOO_MANY_REQUESTS,
    ]
    .into_iter()
    .enumerate()
    {
        let forwarded = format!("203.0.113.{i}");
        let reply = app
            .request(
                "POST",
                "/v1/notifications",
                &[
                    ("x-forwarded-for", &forwarded),
                    ("x-api-key", "wrong-key-of-24-characters"),
                ],
                Some(BODY),
            )
            .await;
        assert_eq!(reply.status, expected, "attempt {i}");
    }
}
