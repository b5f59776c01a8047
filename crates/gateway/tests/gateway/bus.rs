//! The node's link to Redis misbehaving without breaking: a link that goes
//! silent (no RST), and a subscription that is confirmed too late for the
//! node to wait for it. Every event after `welcome` still arrives.

use std::time::Duration;

use notify_testkit::eventually;
use notify_testkit::fault_proxy::{FaultProxy, Mode};

use crate::helpers::*;

/// Redis falls silent just after the last pong: the node notices only at
/// the next ping's timeout, seconds later, and must catch up from when it
/// last heard from Redis, not from when it noticed.
#[actix_web::test]
async fn a_silent_link_is_caught_up_from_when_redis_was_last_heard() {
    let cluster = Cluster::start().await;
    let proxy = FaultProxy::redis().await;
    let g = cluster
        .gateway_with(|c| {
            c.redis_url = proxy.redis_url();
            c.redis_ping_every = Duration::from_secs(2);
            // Far shorter than the ping interval plus its timeout, so a
            // catch-up counted from when the loss was noticed misses the
            // events sent during the silence.
            c.publish_lag = Duration::from_secs(1);
        })
        .await;
    let (mut client, _) = g.connect("quiet").await;
    let before = cluster.notify(&["quiet"], "before").await;
    assert_eq!(client.notification_id().await, before[0]);

    let pings = g.ready().await.1["redis_pings"].as_u64().unwrap();
    eventually("a pong arrived", Duration::from_secs(10), || async {
        g.ready().await.1["redis_pings"].as_u64().unwrap() > pings
    })
    .await;
    proxy.set_mode(Mode::Silent);
    let during = cluster.notify(&["quiet"], "during the silence").await;
    eventually("the node noticed", Duration::from_secs(20), || async {
        g.ready().await.0 == 503
    })
    .await;
    proxy.set_mode(Mode::Forward);

    assert_eq!(client.notification_id().await, during[0]);
    let resumed = client.text().await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    let after = cluster.notify(&["quiet"], "after").await;
    assert_eq!(client.notification_id().await, after[0]);
}

/// Redis confirms the subscription only after the node stopped waiting and
/// greeted the client: what was published in between comes from MySQL once
/// the subscription is confirmed.
#[actix_web::test]
async fn events_between_welcome_and_a_late_subscription_arrive() {
    let cluster = Cluster::start().await;
    let proxy = FaultProxy::redis().await;
    let g = cluster
        .gateway_with(|c| c.redis_url = proxy.redis_url())
        .await;
    // Longer than the node waits for a subscription (3 s), shorter than a
    // Redis call may take (5 s).
    proxy.set_mode(Mode::Delay(Duration::from_secs(4)));
    let (mut client, _) = g.connect("late").await;
    let ids = cluster.notify(&["late"], "right after welcome").await;

    // From the catch-up (then `resumed`), or live if the send was slower
    // than the subscription (then the catch-up's `resumed` comes first).
    let (mut notification, mut resumed) = (None, false);
    while notification.is_none() || !resumed {
        let frame = client.text().await;
        match frame["type"].as_str() {
            Some("notification") => notification = frame["notification"]["id"].as_u64(),
            Some("resumed") => resumed = true,
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert_eq!(notification, Some(ids[0]));
    proxy.set_mode(Mode::Forward);
    let live = cluster.notify(&["late"], "live").await;
    assert_eq!(client.notification_id().await, live[0]);
}
