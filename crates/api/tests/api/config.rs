//! The binary's refusal to start without its settings.

use std::process::Command;

use crate::helpers::API_KEY;

#[test]
fn missing_setting_stops_the_process_with_its_name() {
    let output = Command::new(env!("CARGO_BIN_EXE_notify-api"))
        .env_clear()
        .env("JWT_SECRET", "0123456789abcdef0123")
        .env("WEBHOOK_API_KEYS", API_KEY)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("missing required setting DATABASE_URL"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn a_short_api_key_stops_the_process_without_showing_it() {
    let short = "only-23-characters-long";
    assert_eq!(short.len(), 23);
    let output = Command::new(env!("CARGO_BIN_EXE_notify-api"))
        .env_clear()
        .env("DATABASE_URL", "mysql://root@127.0.0.1:1/x")
        .env("JWT_SECRET", "0123456789abcdef0123")
        .env("WEBHOOK_API_KEYS", format!("{API_KEY}, {short}"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("WEBHOOK_API_KEYS entry 2 has 23 characters")
            && stderr.contains("at least 24"),
        "{stderr}"
    );
    assert!(!stderr.contains(short), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn invalid_number_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_notify-api"))
        .env_clear()
        .env("DATABASE_URL", "mysql://root@127.0.0.1:1/x")
        .env("JWT_SECRET", "0123456789abcdef0123")
        .env("WEBHOOK_API_KEYS", API_KEY)
        .env("DATABASE_POOL_SIZE", "many")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid value for DATABASE_POOL_SIZE"),
        "{stderr}"
    );
}

#[actix_web::test]
async fn token_command_signs_a_usable_token() {
    let output = Command::new(env!("CARGO_BIN_EXE_notify-api"))
        .env_clear()
        .env("JWT_SECRET", "0123456789abcdef0123")
        .args(["token", "alice"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).unwrap();
    let verifier =
        notify_auth::JwtVerifier::new(&notify_auth::JwtConfig::hs256("0123456789abcdef0123"))
            .unwrap();
    let claims = verifier.verify(token.trim()).await.unwrap();
    assert_eq!(claims.sub, "alice");
    assert!(claims.iat.is_some() && claims.jti.is_some(), "revocable");
}
