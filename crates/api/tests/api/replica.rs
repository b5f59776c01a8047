//! Feed reads on a read replica (`DATABASE_READ_URL`) while it is within its
//! lag bound, on the primary when it lags and for a user's own recent
//! changes. The "replica" is a second database this test fills itself (and
//! whose heartbeat it sets), so every answer tells which server gave it.

use std::time::Duration;

use awc::http::StatusCode;
use notify_testkit::eventually;

use crate::helpers::*;

async fn replica() -> TestDb {
    let db = TestDb::create().await;
    notify_store::migrate::run_pending(&db.url).await.unwrap();
    db
}

/// The replica's heartbeat as if it lagged `lag_ms` (negative: ahead, so it
/// stays fresh however long the test takes).
async fn lag(replica: &TestDb, lag_ms: i64) {
    replica
        .execute(&format!(
            "REPLACE INTO replica_heartbeat (id, beat_at) \
             VALUES (1, UTC_TIMESTAMP(6) - INTERVAL {lag_ms} * 1000 MICROSECOND)"
        ))
        .await;
}

/// The titles of the user's first feed page.
async fn titles(app: &TestApp, user: &str) -> Vec<String> {
    let page = app.as_user(user, "GET", "/api/notifications").await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    page.body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn feed_reads_use_a_fresh_replica_except_right_after_the_users_own_changes() {
    let replica = replica().await;
    let app = TestApp::spawn_with(|c| {
        c.database_read_url = Some(replica.url.clone());
        c.database_read_max_lag = Duration::from_millis(400);
    })
    .await;
    for user in ["ann", "bob"] {
        replica
            .execute(&format!(
                "INSERT INTO notifications (user_id, title, message) \
                 VALUES ('{user}', 'on the replica', 'm')"
            ))
            .await;
    }
    app.notify(&["ann", "bob"], "on the primary").await;

    // A replica that has no heartbeat yet is not used.
    assert_eq!(titles(&app, "ann").await, ["on the primary"]);

    lag(&replica, -3_600_000).await;
    eventually(
        "reads went to the replica",
        Duration::from_secs(10),
        || async { titles(&app, "ann").await == ["on the replica"] },
    )
    .await;
    let count = app
        .as_user("bob", "GET", "/api/notifications/unread-count")
        .await;
    assert_eq!(count.body["unread_count"], 1);

    // Ann's own change: her next reads see it, from the primary.
    let reply = app
        .as_user("ann", "PUT", "/api/notifications/read-all")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let page = app.as_user("ann", "GET", "/api/notifications").await;
    assert_eq!(page.body["notifications"][0]["title"], "on the primary");
    assert_eq!(page.body["unread_count"], 0);
    // Bob changed nothing: still the replica.
    assert_eq!(titles(&app, "bob").await, ["on the replica"]);

    // The replica falls behind more than the bound: the primary again.
    lag(&replica, 5_000).await;
    eventually(
        "reads left the lagging replica",
        Duration::from_secs(10),
        || async { titles(&app, "bob").await == ["on the primary"] },
    )
    .await;
}
