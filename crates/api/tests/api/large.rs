//! Requests at every documented limit at once: 1,000 recipients, the longest
//! message and the largest metadata make one request far larger than one
//! MySQL statement may be (`max_allowed_packet`: 16 MiB on MariaDB, 4 MiB
//! on MySQL 5.7 and older MariaDB, whatever an operator set elsewhere).

use awc::http::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::mysql_server::MysqlServer;

const RECIPIENTS: usize = 1000;
const MESSAGE_CHARS: usize = 10_000;
const METADATA_BYTES: usize = 16 * 1024;

/// A JSON object of exactly `METADATA_BYTES` bytes.
fn metadata() -> String {
    let frame = r#"{"pad":""}"#.len();
    format!(r#"{{"pad":"{}"}}"#, "m".repeat(METADATA_BYTES - frame))
}

/// A request within every limit, with the largest content the body limit
/// leaves room for: three-byte characters in the message.
fn maximal_request(tag: &str) -> (Vec<String>, String) {
    let recipients: Vec<String> = (0..RECIPIENTS).map(|i| format!("{tag}{i}")).collect();
    let metadata = metadata();
    assert_eq!(metadata.len(), METADATA_BYTES);
    let body = format!(
        r#"{{"recipients":{},"title":"{tag}","message":"{}","metadata":{metadata}}}"#,
        serde_json::to_string(&recipients).unwrap(),
        "€".repeat(MESSAGE_CHARS),
    );
    assert!(body.len() <= 64 * 1024, "{} bytes", body.len());
    (recipients, body)
}

/// Sends like [`TestApp::send`], allowing for the minutes that a few of
/// the largest requests take in an unoptimised build on a loaded machine.
async fn send_large(app: &TestApp, body: &str) -> Reply {
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(180))
        .finish();
    let mut resp = client
        .post(format!("{}/v1/notifications", app.addr))
        .insert_header(("x-api-key", API_KEY))
        .insert_header(("content-type", "application/json"))
        .send_body(body.to_owned())
        .await
        .expect("request");
    let bytes = resp.body().limit(1 << 20).await.expect("body");
    Reply {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: serde_json::from_slice(&bytes).expect("a JSON body"),
    }
}

async fn assert_stored(app: &TestApp, tag: &str, reply: &Reply) {
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let ids: Vec<u64> = serde_json::from_value(reply.body["ids"].clone()).unwrap();
    assert_eq!(ids.len(), RECIPIENTS);
    // Every id names the recipient at its position, with the whole content.
    let expected_message_bytes = MESSAGE_CHARS * "€".len();
    let matching = app
        .count(&format!(
            "SELECT COUNT(*) AS n FROM notifications WHERE title = '{tag}' \
             AND id IN ({}) AND CHAR_LENGTH(message) = {MESSAGE_CHARS} \
             AND LENGTH(message) = {expected_message_bytes} AND LENGTH(metadata) = {METADATA_BYTES}",
            ids.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ))
        .await;
    assert_eq!(matching as usize, RECIPIENTS);
    for (i, id) in ids.iter().enumerate().step_by(97) {
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) AS n FROM notifications WHERE id = {id} AND user_id = '{tag}{i}'"
            ))
            .await,
            1,
            "id {id} is not {tag}{i}'s"
        );
    }
}

#[actix_web::test]
async fn a_request_at_every_limit_is_stored_whole() {
    let app = TestApp::spawn().await;
    let (recipients, body) = maximal_request("big");
    let mut last = app.subscribe(&recipients[RECIPIENTS - 1]).await;
    let reply = send_large(&app, &body).await;
    assert_stored(&app, "big", &reply).await;
    assert_eq!(app.rows().await as usize, RECIPIENTS);
    let event = last.next().await;
    assert_eq!(
        event["notification"]["id"],
        reply.body["ids"][RECIPIENTS - 1]
    );
    assert_eq!(
        event["notification"]["metadata"],
        serde_json::from_str::<serde_json::Value>(&metadata()).unwrap()
    );
    // Every event was published: the outbox is empty once the publisher
    // reported each statement's batch.
    notify_testkit::eventually(
        "outbox emptied",
        std::time::Duration::from_secs(10),
        || async {
            app.count("SELECT COUNT(*) AS n FROM unpublished_batches")
                .await
                == 0
        },
    )
    .await;
}

#[actix_web::test]
async fn concurrent_requests_at_every_limit_are_all_stored() {
    let app = TestApp::spawn().await;
    let tags: Vec<String> = (0..3).map(|i| format!("c{i}x")).collect();
    let requests: Vec<(String, String)> = tags
        .iter()
        .map(|tag| (tag.clone(), maximal_request(tag).1))
        .collect();
    // And small requests batched with them, which must not fail either.
    let small = futures_util::future::join_all((0..8).map(|i| {
        let body = json!({"recipients": [format!("s{i}")], "title": "small", "message": "m"});
        let app = &app;
        async move { app.send("/v1/notifications", &body.to_string()).await }
    }));
    let large =
        futures_util::future::join_all(requests.iter().map(|(_, body)| send_large(&app, body)));
    let (small, large) = futures_util::future::join(small, large).await;
    for reply in &small {
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    }
    for (tag, reply) in tags.iter().zip(&large) {
        assert_stored(&app, tag, reply).await;
    }
    assert_eq!(app.rows().await as usize, tags.len() * RECIPIENTS + 8);
}

/// `recipients` with a message of `message_chars` ASCII characters and no
/// metadata.
fn plain_request(tag: &str, recipients: usize, message_chars: usize) -> String {
    let recipients: Vec<String> = (0..recipients).map(|i| format!("{tag}{i}")).collect();
    json!({"recipients": recipients, "title": tag, "message": "x".repeat(message_chars)})
        .to_string()
}

/// On a server that takes smaller packets than the 16 MiB above which the
/// driver streams parameters separately, requests of a few megabytes, alone
/// or batched together, must still be split into statements it accepts.
#[actix_web::test]
async fn statements_fit_a_server_with_a_smaller_max_allowed_packet() {
    let server = MysqlServer::start(&["--max-allowed-packet=4M"]).await;
    let app = TestApp::spawn_on(server.database().await, |_| {}).await;

    // 1,000 rows of 10,000 characters: about 10 MB.
    let reply = app
        .send("/v1/notifications", &plain_request("one", 1000, 10_000))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(app.rows().await, 1000);

    // Requests of about 3 MB each fit alone, not two together.
    let bodies: Vec<String> = (0..6)
        .map(|i| plain_request(&format!("m{i}x"), 1000, 3_000))
        .collect();
    let replies =
        futures_util::future::join_all(bodies.iter().map(|body| send_large(&app, body))).await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    }
    assert_eq!(app.rows().await, 7000);

    // And the largest request there is.
    let (_, body) = maximal_request("max");
    let reply = send_large(&app, &body).await;
    assert_stored(&app, "max", &reply).await;
}
