//! Every committed notification's event reaches Redis, even when Redis
//! fails part of the way through publishing a batch.

use std::collections::HashSet;
use std::time::Duration;

use awc::http::StatusCode;
use futures_util::StreamExt;
use notify_testkit::fault_proxy::FaultProxy;
use serde_json::{json, Value};

use crate::helpers::*;

/// Ids of the `notification` events on every user channel of `prefix`, as
/// they arrive on the real Redis (behind no proxy).
async fn notification_ids(
    prefix: &str,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = u64> + Send>> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe(format!("{prefix}user:*")).await.unwrap();
    Box::pin(pubsub.into_on_message().filter_map(|msg| async move {
        let payload: String = msg.get_payload().ok()?;
        let event: Value = serde_json::from_str(&payload).ok()?;
        event["notification"]["id"].as_u64()
    }))
}

async fn collect_until_all(
    events: &mut (impl futures_util::Stream<Item = u64> + Unpin),
    expected: &HashSet<u64>,
) -> HashSet<u64> {
    let mut received = HashSet::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(id) = events.next().await {
            received.insert(id);
            if expected.is_subset(&received) {
                return;
            }
        }
    })
    .await;
    received
}

/// A batch larger than one pipeline, whose first pipeline Redis refuses
/// until the publisher gives it up while the last one goes through: the
/// batch must not count as published, and the sweep sends what was lost.
#[actix_web::test]
async fn a_batch_partly_given_up_is_republished_whole() {
    let proxy = FaultProxy::redis().await;
    let app = TestApp::spawn_with(|c| {
        c.redis_url = proxy.redis_url();
        // Well after the publisher gives up (about 3 s of retries), so
        // only a batch still in the outbox is republished.
        c.sweep_min_age = Duration::from_secs(8);
    })
    .await;
    let mut events = notification_ids(&app.prefix).await;
    // Every attempt at the first pipeline is cut.
    proxy.cut_connections_sending("PUBLISH", 5);

    let recipients: Vec<String> = (0..700).map(|i| format!("u{i}")).collect();
    let body = json!({"recipients": recipients, "title": "t", "message": "m"});
    let reply = app.send("/v1/notifications", &body.to_string()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let ids: HashSet<u64> = serde_json::from_value(reply.body["ids"].clone()).unwrap();

    let received = collect_until_all(&mut events, &ids).await;
    assert_eq!(proxy.cuts_remaining(), 0, "the fault was not triggered");
    let missing = ids.difference(&received).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} events never arrived",
        ids.len()
    );
}

/// Batches left in the outbox (the api died between commit and publish)
/// are all republished, page after page, in pipelines Redis can answer.
#[actix_web::test]
async fn the_sweep_republishes_every_page_of_the_outbox() {
    let app = TestApp::spawn().await;
    let mut events = notification_ids(&app.prefix).await;
    // 120 batches of 30 large rows: more than two sweep pages, and more
    // events per page than one pipeline.
    let message = "x".repeat(10_000);
    let mut expected = HashSet::new();
    for batch in 0..120u64 {
        let first = 1_000 + batch * 30;
        let mut rows = Vec::new();
        for id in first..first + 30 {
            rows.push(format!(
                "({id}, 'u{}', 'k', 't', '{message}', NOW(6) - INTERVAL 5 SECOND)",
                id % 7
            ));
            expected.insert(id);
        }
        app.db
            .execute(&format!(
                "INSERT INTO notifications (id, user_id, type, title, message, created_at) VALUES {}",
                rows.join(",")
            ))
            .await;
        app.db
            .execute(&format!(
                "INSERT INTO unpublished_batches (first_id, last_id, created_at) \
                 VALUES ({first}, {}, NOW(6) - INTERVAL 5 SECOND)",
                first + 29
            ))
            .await;
    }
    let received = collect_until_all(&mut events, &expected).await;
    assert_eq!(expected.difference(&received).count(), 0);
    notify_testkit::eventually("outbox emptied", Duration::from_secs(10), || async {
        app.count("SELECT COUNT(*) AS n FROM unpublished_batches")
            .await
            == 0
    })
    .await;
}
