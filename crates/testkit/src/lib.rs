//! Test support shared by the integration suites: throwaway MySQL databases,
//! private Redis servers, TCP forwarders that simulate an outage or a
//! misbehaving network, nginx with the production configuration, and a
//! WebSocket client. Everything talks to real services over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fault_proxy;
pub mod nginx;
pub mod outage;
pub mod process;
pub mod redis_cluster;
pub mod redis_server;
pub mod ws;

use std::sync::atomic::{AtomicU64, Ordering};

use notify_auth::{jwt::sign_hs256, Claims};

/// The secret test tokens are signed with.
pub const JWT_SECRET: &str = "test-secret-at-least-16";

/// `mysql://user@host:port` of the server tests create databases on.
pub fn mysql_base() -> String {
    std::env::var("TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for `user`, valid for ten minutes, signed with [`JWT_SECRET`],
/// with a unique `jti`.
pub fn token(user: &str) -> String {
    token_with(user, &unique("jti"), now_secs())
}

/// A token for `user` with this `jti`, issued at `iat`.
pub fn token_with(user: &str, jti: &str, iat: u64) -> String {
    sign(Claims {
        sub: user.into(),
        exp: now_secs() + 600,
        iat: Some(iat),
        jti: Some(jti.into()),
        roles: Vec::new(),
    })
}

/// A token for `user` carrying `roles` (in the `roles` claim).
pub fn token_with_roles(user: &str, roles: &[&str]) -> String {
    sign(Claims {
        sub: user.into(),
        exp: now_secs() + 600,
        iat: Some(now_secs()),
        jti: Some(unique("jti")),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    })
}

fn sign(claims: Claims) -> String {
    sign_hs256(JWT_SECRET.as_bytes(), &claims).unwrap()
}

/// A fresh, empty database, dropped when this goes out of scope.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = unique("notify_test");
        notify_store::migrate::execute_admin(
            &format!("{}/test", mysql_base()),
            format!("CREATE DATABASE `{name}`"),
        )
        .await
        .expect("create test database");
        TestDb {
            url: format!("{}/{name}", mysql_base()),
            name,
        }
    }

    /// Runs one statement on this database.
    pub async fn execute(&self, statement: &str) {
        use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
        let mut conn = AsyncMysqlConnection::establish(&self.url).await.unwrap();
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap();
    }

    /// The JSON value a query of one JSON column and at most one row
    /// returns; None when it returns no row or NULL.
    pub async fn json(&self, query: &str) -> Option<serde_json::Value> {
        use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Json {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            j: Option<String>,
        }
        let mut conn = AsyncMysqlConnection::establish(&self.url).await.unwrap();
        let row = diesel::sql_query(format!("SELECT ({query}) AS j"))
            .get_result::<Json>(&mut conn)
            .await
            .unwrap();
        serde_json::from_str(&row.j?).ok()
    }

    /// The single number a `SELECT COUNT(*) AS n ...` query returns.
    pub async fn count(&self, query: &str) -> i64 {
        use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = AsyncMysqlConnection::establish(&self.url).await.unwrap();
        diesel::sql_query(query)
            .get_result::<Count>(&mut conn)
            .await
            .unwrap()
            .n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = format!("{}/test", mysql_base());
        let name = self.name.clone();
        // The test's runtime is blocked while this runs, so a task of the
        // service under test may be frozen inside a transaction on this
        // database; its connection is killed first or DROP would wait on it.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = rt.block_on(drop_database(&admin, &name));
        })
        .join();
    }
}

async fn drop_database(admin: &str, name: &str) -> Result<(), diesel::result::Error> {
    use diesel::sql_types::BigInt;
    use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

    #[derive(diesel::QueryableByName)]
    struct Process {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let mut conn = AsyncMysqlConnection::establish(admin)
        .await
        .map_err(|e| diesel::result::Error::QueryBuilderError(e.into()))?;
    let processes: Vec<Process> = diesel::sql_query(
        "SELECT CAST(id AS SIGNED) AS id FROM information_schema.processlist WHERE db = ?",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .load(&mut conn)
    .await?;
    for process in processes {
        let _ = diesel::sql_query(format!("KILL {}", process.id))
            .execute(&mut conn)
            .await;
    }
    diesel::sql_query(format!("DROP DATABASE IF EXISTS `{name}`"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Waits for `check` to hold, polling; for states that have no event to
/// await (a process's readiness, a server-side count). Panics after
/// `timeout`.
/// Waits until something accepts TCP connections on loopback `port`.
pub async fn listening(what: &str, port: u16) {
    eventually(what, std::time::Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
}

pub async fn eventually<F, Fut>(what: &str, timeout: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Plays slowloris against `addr`: sends a request head one byte every
/// `interval` and returns how long the server let that go on before closing
/// the connection. Panics if it is still open after `limit`.
pub async fn slowloris(
    addr: std::net::SocketAddr,
    interval: std::time::Duration,
    limit: std::time::Duration,
) -> std::time::Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let started = std::time::Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1024];
    for byte in head.iter().cycle() {
        assert!(
            started.elapsed() < limit,
            "a slow client was still connected after {limit:?}"
        );
        if socket.write_all(&[*byte]).await.is_err() {
            return started.elapsed();
        }
        // Whatever the server says (a 408 or nothing), it must end the
        // connection.
        match tokio::time::timeout(interval, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    unreachable!("the head is cycled forever")
}

/// The value of one series (`name{label="value"}`) in Prometheus text; 0
/// when absent, as a counter that never moved.
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a counter value"))
        .unwrap_or(0)
}
