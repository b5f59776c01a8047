//! Retention of the connection log: old rows go, in batches, and nothing
//! else does.

use std::time::Duration;

use crate::helpers::TestApp;

#[actix_web::test]
async fn rows_older_than_the_retention_are_deleted_in_batches() {
    let app = TestApp::spawn().await;
    let row = |session: String, age_days: u32| {
        format!(
            "('{session}', 'u', 'n', 'n#1', NOW(6) - INTERVAL {age_days} DAY, NOW(6) - INTERVAL {age_days} DAY)"
        )
    };
    let mut values: Vec<String> = (0..2500).map(|i| row(format!("{i:032x}"), 40)).collect();
    values.push(row(format!("{:032x}", 9_999_999), 29));
    values.push(row(format!("{:032x}", 9_999_998), 0));
    app.db
        .execute(&format!(
            "INSERT INTO connection_logs (session_id, user_id, node, instance, connected_at, disconnected_at) VALUES {}",
            values.join(", ")
        ))
        .await;
    let pool = notify_store::build_pool(&app.db.url, 1).unwrap();
    notify_api::housekeeping::purge_connection_logs(&pool, Duration::from_secs(30 * 86_400)).await;
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM connection_logs").await,
        2
    );
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM connection_logs WHERE connected_at < NOW(6) - INTERVAL 30 DAY")
            .await,
        0
    );
}
