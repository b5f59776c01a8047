//! Catching up from MySQL: resume after reconnect, acks, and the sweep that
//! republishes events that were never published.

use std::time::Duration;

use notify_testkit::ws::WsClient;
use notify_testkit::{eventually, token};
use serde_json::{json, Value};

use crate::helpers::*;

async fn sql(cluster: &Cluster, statement: &str) {
    cluster.db.execute(statement).await
}

async fn count(cluster: &Cluster, query: &str) -> i64 {
    cluster.db.count(query).await
}

/// Reads notification frames up to the `resumed` frame that ends a batch.
async fn resume_batch(client: &mut WsClient) -> (Vec<u64>, Value) {
    let mut ids = Vec::new();
    loop {
        let frame = client.text().await;
        match frame["type"].as_str() {
            Some("notification") => ids.push(frame["notification"]["id"].as_u64().unwrap()),
            Some("resumed") => return (ids, frame),
            _ => panic!("unexpected frame {frame}"),
        }
    }
}

#[actix_web::test]
async fn resume_sends_what_was_missed_in_id_order_then_live() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.extend(cluster.notify(&["alice"], &format!("n{i}")).await);
    }
    // The first two are old; the client has everything up to ids[1].
    sql(
        &cluster,
        &format!(
            "UPDATE notifications SET created_at = NOW(6) - INTERVAL 120 SECOND WHERE id = {}",
            ids[0]
        ),
    )
    .await;
    sql(
        &cluster,
        &format!(
            "UPDATE notifications SET created_at = NOW(6) - INTERVAL 60 SECOND WHERE id = {}",
            ids[1]
        ),
    )
    .await;

    // One of them was read elsewhere: the count is the user's, not the batch's.
    sql(
        &cluster,
        &format!(
            "UPDATE notifications SET read_at = NOW(6) WHERE id = {}",
            ids[0]
        ),
    )
    .await;

    let url = format!("{}/ws?token={}&after={}", g.base, token("alice"), ids[1]);
    let mut client = WsClient::connect(&url, &[]).await.unwrap();
    assert_eq!(client.text().await["type"], "welcome");
    let (sent, resumed) = resume_batch(&mut client).await;
    assert_eq!(sent, ids[2..].to_vec());
    assert_eq!(
        resumed,
        json!({"type": "resumed", "count": 3, "truncated": false, "oldest_id": ids[2], "unread_count": 4})
    );

    let live = cluster.notify(&["alice"], "live").await;
    assert_eq!(client.notification_id().await, live[0]);
}

/// Ids can commit out of order across api nodes: a resume also resends
/// what was created just before the client's last id, so an id below it
/// that the client never got is not lost.
#[actix_web::test]
async fn resume_covers_ids_below_the_last_one_created_around_it() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.extend(cluster.notify(&["bob"], &format!("n{i}")).await);
    }
    sql(&cluster, &format!("UPDATE notifications SET created_at = NOW(6) - INTERVAL 300 SECOND WHERE id IN ({}, {})", ids[0], ids[1])).await;
    // The client got ids[2] (say, out of order) but never ids[1]... which
    // is old here, and ids[3] is newer: both rules together send ids[3]
    // and nothing older than the window.
    let url = format!("{}/ws?token={}&after={}", g.base, token("bob"), ids[2]);
    let mut client = WsClient::connect(&url, &[]).await.unwrap();
    client.text().await;
    let (sent, _) = resume_batch(&mut client).await;
    assert_eq!(sent, vec![ids[3]]);

    // Resume from ids[3]: ids[2] was created within the window before it,
    // so it is sent again (the client drops it by id if it has it).
    client
        .send(&json!({"type": "resume", "after": ids[3]}).to_string())
        .await;
    let (sent, resumed) = resume_batch(&mut client).await;
    // This connection already sent ids[3] and ids[2] is new to it.
    assert_eq!(sent, vec![ids[2]]);
    assert_eq!(resumed["count"], 1);
}

#[actix_web::test]
async fn resume_by_frame_after_frame_auth_and_truncation() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let values: Vec<String> = (0..505)
        .map(|i| format!("('carol', 't', 'm{i}', NOW(6))"))
        .collect();
    sql(
        &cluster,
        &format!(
            "INSERT INTO notifications (user_id, title, message, created_at) VALUES {}",
            values.join(",")
        ),
    )
    .await;
    let mut client = WsClient::connect(&format!("{}/ws", g.base), &[])
        .await
        .unwrap();
    client
        .send(&json!({"type": "auth", "token": token("carol")}).to_string())
        .await;
    let welcome = client.text().await;
    assert_eq!(welcome["unread_count"], 505);
    client.send(r#"{"type":"resume","after":0}"#).await;
    let (sent, resumed) = resume_batch(&mut client).await;
    assert_eq!(sent.len(), 500);
    assert!(sent.windows(2).all(|w| w[0] < w[1]), "not in id order");
    assert_eq!(resumed["truncated"], true);
    assert_eq!(resumed["oldest_id"], sent[0]);
    // The five older ones are there for the api's `before=` paging.
    assert_eq!(
        count(
            &cluster,
            &format!(
                "SELECT COUNT(*) AS n FROM notifications WHERE id < {}",
                sent[0]
            )
        )
        .await,
        5
    );
}

#[actix_web::test]
async fn bad_after_is_refused_before_the_upgrade() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let url = format!("{}/ws?token={}&after=abc", g.base, token("dan"));
    assert_eq!(WsClient::connect(&url, &[]).await.err(), Some(400));
    let (mut client, _) = g.connect("dan").await;
    client.send(r#"{"type":"resume","after":-1}"#).await;
    assert_eq!(client.text().await["code"], "invalid_frame");
}

#[actix_web::test]
async fn acks_set_delivered_and_senders_see_the_state() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let (mut client, _) = g.connect("erin").await;
    let ids = cluster.notify(&["erin"], "hello").await;
    assert_eq!(client.notification_id().await, ids[0]);
    let state = |id: u64| {
        let api = cluster.api.clone();
        async move {
            let mut response = awc::Client::new()
                .get(format!("{api}/v1/notifications/{id}"))
                .insert_header(("x-api-key", API_KEY))
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap();
            (response.status().as_u16(), body)
        }
    };
    let (status, body) = state(ids[0]).await;
    assert_eq!(status, 200);
    assert_eq!(body["state"], "stored");
    assert_eq!(body["user_id"], "erin");

    client
        .send(&json!({"type": "ack", "ids": ids}).to_string())
        .await;
    eventually("ack written", Duration::from_secs(5), || async {
        state(ids[0]).await.1["state"] == "delivered"
    })
    .await;
    let first = state(ids[0]).await.1["delivered_at"].clone();
    // A second ack does not move the first delivery time.
    client
        .send(&json!({"type": "ack", "ids": ids}).to_string())
        .await;
    client
        .send(&json!({"type": "read", "ids": ids}).to_string())
        .await;
    assert_eq!(client.text().await["type"], "read");
    let (_, body) = state(ids[0]).await;
    assert_eq!(body["state"], "read");
    assert_eq!(body["delivered_at"], first);

    let (status, body) = state(999_999_999).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let mut response = awc::Client::new()
        .get(format!("{}/v1/notifications/{}", cluster.api, ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let _ = response.body().await;
}

/// A batch whose events never went out (as if the api died right after
/// the commit) is republished by the sweep and reaches the connected client.
#[actix_web::test]
async fn the_sweep_publishes_what_was_never_published() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let (mut client, _) = g.connect("fay").await;
    // What the api's transaction leaves if it dies right after the commit:
    // the rows and their outbox entry.
    sql(
        &cluster,
        "INSERT INTO notifications (user_id, title, message, created_at) \
         VALUES ('fay', 'lost', 'never published', NOW(6) - INTERVAL 5 SECOND)",
    )
    .await;
    sql(
        &cluster,
        "INSERT INTO unpublished_batches (first_id, last_id, created_at) \
         SELECT MAX(id), MAX(id), NOW(6) - INTERVAL 5 SECOND FROM notifications",
    )
    .await;
    let frame = client.text().await;
    assert_eq!(frame["notification"]["message"], "never published");
    eventually("outbox emptied", Duration::from_secs(5), || async {
        count(&cluster, "SELECT COUNT(*) AS n FROM unpublished_batches").await == 0
    })
    .await;
    // A normal send leaves the outbox once published, so the sweep does not
    // send it again.
    let ids = cluster.notify(&["fay"], "normal").await;
    assert_eq!(client.notification_id().await, ids[0]);
    eventually("normal batch cleared", Duration::from_secs(5), || async {
        count(&cluster, "SELECT COUNT(*) AS n FROM unpublished_batches").await == 0
    })
    .await;
    assert!(
        client
            .next_within(Duration::from_millis(1500))
            .await
            .is_none(),
        "a duplicate was sent"
    );
}
