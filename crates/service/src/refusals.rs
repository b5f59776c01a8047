//! Counting refusals by their stable code (and closes by their reason), so
//! an operator sees an attack or a misbehaving client in `GET /metrics` and
//! in the periodic stats line, not only in individual log lines.
//!
//! A refusal response is marked with [`mark`]; the [`count_refusals`]
//! middleware, outermost in the app, counts the marked ones in the app's
//! `web::Data<Counters>`. Codes are `&'static str`,
//! so the set of keys is bounded by the code, whatever clients send.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

/// Occurrences per static key.
#[derive(Default)]
pub struct Counters {
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Counters {
    pub fn add(&self, key: &'static str) {
        // A poisoned lock only means another thread panicked mid-increment.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(key).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `key=count` pairs for a log line.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (key, count) in self.snapshot() {
            let _ = write!(
                out,
                "{}{key}={count}",
                if out.is_empty() { "" } else { " " }
            );
        }
        out
    }

    /// Prometheus text lines: `{metric}{{{label}="key"}} count`.
    pub fn prometheus(&self, metric: &str, label: &str, help: &str) -> String {
        let mut out = format!("# HELP {metric} {help}\n# TYPE {metric} counter\n");
        for (key, count) in self.snapshot() {
            let _ = writeln!(out, "{metric}{{{label}=\"{key}\"}} {count}");
        }
        out
    }
}

/// The code of a refusal, carried in the response's extensions.
#[derive(Clone, Copy)]
struct RefusalCode(&'static str);

/// Marks `response` as the refusal `code`.
pub fn mark(mut response: HttpResponse, code: &'static str) -> HttpResponse {
    response.extensions_mut().insert(RefusalCode(code));
    response
}

/// The refusal code `response` was marked with, if any.
pub fn code_of(response: &HttpResponse) -> Option<&'static str> {
    response
        .extensions()
        .get::<RefusalCode>()
        .map(|RefusalCode(code)| *code)
}

/// Middleware (`App::wrap(from_fn(count_refusals))`, wrapped last so that
/// refusals made by other middleware count too).
pub async fn count_refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let response = next.call(req).await?;
    let code = response
        .response()
        .extensions()
        .get::<RefusalCode>()
        .copied();
    if let Some(RefusalCode(code)) = code {
        if let Some(counters) = response.request().app_data::<web::Data<Counters>>() {
            counters.add(code);
        }
    }
    Ok(response)
}

/// One Prometheus gauge or counter line with its help and type.
pub fn prometheus_value(metric: &str, kind: &str, help: &str, value: u64) -> String {
    format!("# HELP {metric} {help}\n# TYPE {metric} {kind}\n{metric} {value}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_for_logs_and_prometheus() {
        let counters = Counters::default();
        counters.add("rate_limited");
        counters.add("invalid_token");
        counters.add("rate_limited");
        assert_eq!(counters.snapshot().get("rate_limited"), Some(&2));
        assert_eq!(counters.snapshot().get("other"), None);
        assert_eq!(counters.summary(), "invalid_token=1 rate_limited=2");
        let text = counters.prometheus("x_total", "code", "refusals");
        assert!(
            text.contains("x_total{code=\"rate_limited\"} 2\n"),
            "{text}"
        );
        assert!(text.starts_with("# HELP x_total refusals\n# TYPE x_total counter\n"));
    }
}
