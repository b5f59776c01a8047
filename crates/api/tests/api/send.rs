use awc::http::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn v1_stores_one_row_per_recipient_and_publishes_each() {
    let app = TestApp::spawn().await;
    let mut alice = app.subscribe("alice").await;
    let mut bob = app.subscribe("bob").await;
    let body = json!({
        "recipients": ["alice", "bob"],
        "type": "comment",
        "title": "New comment",
        "message": "Ann replied",
        "link": "https://example.com/c/1",
        "metadata": {"post": 1, "nested": {"ok": true}}
    });
    let reply = app.send("/v1/notifications", &body.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let ids: Vec<u64> = serde_json::from_value(reply.body["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1], ids[0] + 1);
    assert_eq!(app.rows().await, 2);

    let event = alice.next().await;
    assert_eq!(event["type"], "notification");
    let n = &event["notification"];
    assert_eq!(n["id"], ids[0]);
    assert_eq!(n["user_id"], "alice");
    assert_eq!(n["type"], "comment");
    assert_eq!(n["title"], "New comment");
    assert_eq!(n["message"], "Ann replied");
    assert_eq!(n["link"], "https://example.com/c/1");
    assert_eq!(n["metadata"], json!({"post": 1, "nested": {"ok": true}}));
    assert_eq!(n["read_at"], serde_json::Value::Null);
    assert_eq!(bob.next().await["notification"]["id"], ids[1]);

    // The event carries exactly what the feed returns for the same row.
    let feed = app.as_user("alice", "GET", "/api/notifications").await;
    assert_eq!(&feed.body["notifications"][0], n);
}

/// The deepest nesting allowed, escaped and raw non-ASCII text: stored and
/// delivered exactly as sent.
#[actix_web::test]
async fn metadata_at_the_limits_is_stored_exactly() {
    let app = TestApp::spawn().await;
    let mut alice = app.subscribe("alice").await;
    let metadata = format!(
        r#"{{"deep":{}1{},"escaped":"\ud83d\ude00 \u00e9","raw":"😀 é"}}"#,
        "[".repeat(15),
        "]".repeat(15)
    );
    let body =
        format!(r#"{{"recipients":["alice"],"title":"t","message":"m","metadata":{metadata}}}"#);
    let reply = app.send("/v1/notifications", &body).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let sent: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(alice.next().await["notification"]["metadata"], sent);
    let feed = app.as_user("alice", "GET", "/api/notifications").await;
    assert_eq!(feed.body["notifications"][0]["metadata"], sent);
    assert_eq!(sent["raw"], "😀 é");
    assert_eq!(sent["escaped"], sent["raw"]);
}

#[actix_web::test]
async fn a_thousand_recipients_go_in_one_call() {
    let app = TestApp::spawn().await;
    let recipients: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let mut last = app.subscribe("user-999").await;
    let body = json!({"recipients": recipients, "title": "t", "message": "m"});
    let reply = app.send("/v1/notifications", &body.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let ids: Vec<u64> = serde_json::from_value(reply.body["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 1000);
    assert_eq!(app.rows().await, 1000);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) AS n FROM notifications WHERE id = {} AND user_id = 'user-999'",
            ids[999]
        ))
        .await,
        1
    );
    assert_eq!(last.next().await["notification"]["id"], ids[999]);
}

#[actix_web::test]
async fn webhook_accepts_key_in_header_or_body() {
    let app = TestApp::spawn().await;
    let mut carol = app.subscribe("carol").await;
    let reply = app
        .send(
            "/webhook/notify",
            r#"{"recipientId":"carol","message":"Payment received"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let first = reply.body["id"].as_u64().unwrap();
    let event = carol.next().await;
    assert_eq!(event["notification"]["id"], first);
    assert_eq!(event["notification"]["type"], "generic");
    assert_eq!(event["notification"]["title"], "");

    let body = json!({"recipientId": "carol", "message": "again", "title": "T",
                      "type": "payment", "apiKey": SECOND_API_KEY});
    let reply = app
        .request("POST", "/webhook/notify", &[], Some(&body.to_string()))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(carol.next().await["notification"]["type"], "payment");

    let bearer = format!("Bearer {API_KEY}");
    let reply = app
        .request(
            "POST",
            "/webhook/notify",
            &[("authorization", &bearer)],
            Some(r#"{"recipientId":"carol","message":"third"}"#),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(app.rows().await, 3);
}

/// Every refusal: status, stable code, and nothing stored or published.
#[actix_web::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let mut alice = app.subscribe("alice").await;
    let long_title = "x".repeat(256);
    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let huge = json!({"recipients": ["alice"], "title": "t", "message": "x".repeat(70_000)});
    let long_message =
        json!({"recipients": ["alice"], "title": "t", "message": "x".repeat(10_001)});
    let long_link = json!({"recipients": ["alice"], "title": "t", "message": "m",
        "link": format!("https://example.com/{}", "x".repeat(2_030))});
    let long_type =
        json!({"recipients": ["alice"], "title": "t", "message": "m", "type": "x".repeat(65)});
    let big_metadata = json!({"recipients": ["alice"], "title": "t", "message": "m",
        "metadata": {"blob": "x".repeat(16 * 1024)}});
    let nested = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    let too_deep_metadata = format!(
        r#"{{"recipients":["alice"],"title":"t","message":"m","metadata":{{"a":{}}}}}"#,
        nested(16)
    );
    let deep = format!(
        r#"{{"recipients":["alice"],"title":"t","message":"m","metadata":{{"a":{}{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "/v1/notifications",
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/v1/notifications",
            "".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":"alice","title":"t","message":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":["alice",7],"title":"t","message":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":[{"id":"alice"}],"title":"t","message":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":["alice"],"message":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":["alice"],"title":5,"message":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":[],"title":"t","message":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            json!({"recipients": too_many, "title": "t", "message": "m"}).to_string(),
            StatusCode::BAD_REQUEST,
            "too_many_recipients",
        ),
        (
            "/v1/notifications",
            json!({"recipients": ["alice"], "title": long_title, "message": "m"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":["alice"],"title":"t","message":"  "}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":["alice","alice"],"title":"t","message":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":["alice "],"title":"t","message":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":[""],"title":"t","message":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":["alice"],"title":"t","message":"m","type":"has space"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":["alice"],"title":"t","message":"m","metadata":[1]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":["alice"],"title":"t","message":"m","metadata":"s"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            long_message.to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            long_link.to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            long_type.to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            big_metadata.to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            deep,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            too_deep_metadata,
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            r#"{"recipients":["alice"],"title":"t","message":"m","metadata":{"s":"\ud800"}}"#
                .into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/webhook/notify",
            r#"{"recipientId":"alice","message":"m","metadata":{"s":"\udc00 alone"}}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/notifications",
            huge.to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "/webhook/notify",
            r#"{"message":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/webhook/notify",
            r#"{"recipientId":"alice"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/webhook/notify",
            r#"{"recipientId":["alice"],"message":"m"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/webhook/notify",
            r#"{"recipientId":"alice","message":"m","title":"#.into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
    ];
    for (path, body, status, code) in &cases {
        let reply = app.send(path, body).await;
        assert_eq!(reply.status, *status, "{path} {body:.80}: {}", reply.body);
        assert_eq!(reply.code(), *code, "{path} {body:.80}");
        assert!(!reply.body["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(app.rows().await, 0);
    // Each refusal was counted under its code.
    for code in [
        "malformed_json",
        "invalid_body",
        "invalid_field",
        "payload_too_large",
    ] {
        let expected = cases.iter().filter(|case| case.3 == code).count() as u64;
        let series = format!("notify_api_refusals_total{{code=\"{code}\"}}");
        assert_eq!(app.metric(&series).await, expected, "{code}");
    }

    // Nothing was published for any of them: the next event on the channel
    // is the one sent now.
    let ids = app.notify(&["alice"], "valid").await;
    assert_eq!(alice.next().await["notification"]["id"], ids[0]);
}

#[actix_web::test]
async fn missing_or_wrong_api_key_is_401() {
    let app = TestApp::spawn().await;
    let body = r#"{"recipients":["alice"],"title":"t","message":"m"}"#;
    let webhook = r#"{"recipientId":"alice","message":"m"}"#;
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/v1/notifications",
            vec![],
            body.into(),
            "missing_credentials",
        ),
        (
            "/v1/notifications",
            vec![("x-api-key", "nope")],
            body.into(),
            "invalid_api_key",
        ),
        (
            "/v1/notifications",
            vec![("authorization", "Bearer nope")],
            body.into(),
            "invalid_api_key",
        ),
        (
            "/v1/notifications",
            vec![("authorization", "Basic abc")],
            body.into(),
            "missing_credentials",
        ),
        (
            "/webhook/notify",
            vec![],
            webhook.into(),
            "missing_credentials",
        ),
        (
            "/webhook/notify",
            vec![],
            r#"{"recipientId":"alice","message":"m","apiKey":"nope"}"#.into(),
            "invalid_api_key",
        ),
        // A wrong header key is refused even when the body carries a good one.
        (
            "/webhook/notify",
            vec![("x-api-key", "nope")],
            format!(r#"{{"recipientId":"alice","message":"m","apiKey":"{API_KEY}"}}"#),
            "invalid_api_key",
        ),
        // Unparseable body and no key: the missing key is what is reported.
        (
            "/webhook/notify",
            vec![],
            "{oops".into(),
            "missing_credentials",
        ),
    ];
    for (path, headers, body, code) in &cases {
        let reply = app.request("POST", path, headers, Some(body)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path} {headers:?}");
        assert_eq!(reply.code(), *code, "{path} {headers:?}");
    }
    assert_eq!(app.rows().await, 0);
}

#[actix_web::test]
async fn unknown_route_is_json_404() {
    let app = TestApp::spawn().await;
    let reply = app.request("GET", "/nope", &[], None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "not_found");
}

/// Many requests at once are written together (see `batcher`); each still
/// gets exactly its own rows and ids, and each recipient its own event.
#[actix_web::test]
async fn concurrent_requests_each_get_their_own_ids() {
    let app = TestApp::spawn().await;
    let mut subscriptions = Vec::new();
    for i in 0..40 {
        subscriptions.push(app.subscribe(&format!("c{i}")).await);
    }
    let replies = futures_util::future::join_all((0..40).map(|i| {
        let body = json!({
            "recipients": [format!("c{i}"), format!("d{i}")],
            "title": format!("t{i}"),
            "message": "m",
        })
        .to_string();
        let app = &app;
        async move { app.send("/v1/notifications", &body).await }
    }))
    .await;
    let mut all_ids = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        let ids: Vec<u64> = serde_json::from_value(reply.body["ids"].clone()).unwrap();
        assert_eq!(ids.len(), 2);
        for (id, user) in ids.iter().zip([format!("c{i}"), format!("d{i}")]) {
            assert_eq!(
                app.count(&format!(
                    "SELECT COUNT(*) AS n FROM notifications WHERE id = {id} AND user_id = '{user}' AND title = 't{i}'"
                ))
                .await,
                1,
                "id {id} is not {user}'s"
            );
        }
        all_ids.extend(ids);
    }
    all_ids.sort();
    all_ids.dedup();
    assert_eq!(all_ids.len(), 80);
    assert_eq!(app.rows().await, 80);
    for (i, sub) in subscriptions.iter_mut().enumerate() {
        let event = sub.next().await;
        assert_eq!(event["notification"]["id"], replies[i].body["ids"][0]);
        assert_eq!(event["notification"]["title"], format!("t{i}"));
    }
}
