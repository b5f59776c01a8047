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

/// Runs the api binary with only these settings; its exit status and stderr.
fn run_with(args: &[&str], settings: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_notify-api"))
        .env_clear()
        .envs(settings.iter().copied())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr)
}

#[test]
fn identity_provider_keys_need_an_audience_or_an_explicit_opt_out() {
    let pem = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testkit/keys/rsa-public.pem"
    );
    let serve = [
        ("DATABASE_URL", "mysql://root@127.0.0.1:1/x"),
        ("WEBHOOK_API_KEYS", "0123456789abcdef0123456789"),
    ];
    for (source, location) in [
        ("JWT_JWKS", "/nonexistent/jwks.json"),
        ("JWT_PUBLIC_KEY_FILE", pem),
    ] {
        let mut settings = serve.to_vec();
        settings.push((source, location));
        let (ok, stderr) = run_with(&[], &settings);
        assert!(!ok);
        assert!(
            stderr.contains(&format!("JWT_AUDIENCE is required with {source}"))
                && stderr.contains("JWT_ACCEPT_ANY_AUDIENCE=true"),
            "{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        // The `token` command reads the same settings and, once they are
        // accepted, stops because it signs HS256 tokens only.
        for accepted in [
            ("JWT_AUDIENCE", "notify"),
            ("JWT_ACCEPT_ANY_AUDIENCE", "true"),
        ] {
            let (ok, stderr) = run_with(&["token", "alice"], &[(source, location), accepted]);
            assert!(!ok);
            assert!(
                stderr.contains("signs HS256 tokens only"),
                "{accepted:?}: {stderr}"
            );
        }
        let (_, stderr) = run_with(
            &["token", "alice"],
            &[
                (source, location),
                ("JWT_AUDIENCE", "notify"),
                ("JWT_ACCEPT_ANY_AUDIENCE", "true"),
            ],
        );
        assert!(
            stderr.contains("set only one of JWT_AUDIENCE and JWT_ACCEPT_ANY_AUDIENCE"),
            "{stderr}"
        );
    }
}

#[test]
fn jwt_leeway_is_bounded() {
    let secret = ("JWT_SECRET", "0123456789abcdef0123");
    let (ok, stderr) = run_with(&["token", "alice"], &[secret, ("JWT_LEEWAY_SECS", "301")]);
    assert!(!ok);
    assert!(
        stderr.contains("JWT_LEEWAY_SECS must be 0 to 300 seconds"),
        "{stderr}"
    );
    let (ok, stderr) = run_with(&["token", "alice"], &[secret, ("JWT_LEEWAY_SECS", "300")]);
    assert!(ok, "{stderr}");
}

#[test]
fn a_channel_prefix_with_hash_tag_braces_stops_the_process() {
    let (ok, stderr) = run_with(
        &[],
        &[
            ("DATABASE_URL", "mysql://root@127.0.0.1:1/x"),
            ("JWT_SECRET", "0123456789abcdef0123"),
            ("WEBHOOK_API_KEYS", API_KEY),
            ("CHANNEL_PREFIX", "app{1}:"),
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("CHANNEL_PREFIX must not contain '{' or '}'"),
        "{stderr}"
    );
}
