//! The one error type of the api. Every refusal has a stable snake_case code
//! and is sent as `{"error":{"code":"...","message":"..."}}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use notify_auth::AuthError;
use notify_bus::TokenRefusal;
use notify_chat::ChatError;
use notify_store::StoreError;

/// Seconds a client should wait before retrying when a backing service is
/// away.
const RETRY_AFTER_SECS: &str = "2";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidField(String),
    #[error("at most {0} recipients per request")]
    TooManyRecipients(usize),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("notification ids are positive integers")]
    InvalidId,
    #[error("a topic is 1 to 128 characters of A-Z a-z 0-9 _ . : -")]
    InvalidTopic,
    #[error("presence is not enabled for this topic")]
    PresenceDisabled,
    #[error("Idempotency-Key must be 1 to 200 visible ASCII characters")]
    InvalidIdempotencyKey,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInProgress,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    #[error(
        "this Idempotency-Key was used more than {} hours ago and cannot be used again",
        notify_store::idempotency::REPLAY_WINDOW.num_hours()
    )]
    IdempotencyExpired,
    #[error("{0}")]
    MissingCredentials(&'static str),
    #[error("invalid API key")]
    InvalidApiKey,
    #[error("invalid token")]
    InvalidToken,
    #[error("token expired")]
    TokenExpired,
    #[error("token revoked")]
    TokenRevoked,
    #[error("{0}")]
    InvalidSignature(&'static str),
    #[error("webhook-timestamp must be Unix seconds within 300 s of the server's clock")]
    InvalidWebhookTimestamp,
    #[error("webhook-id must be 1 to 255 visible ASCII characters")]
    InvalidWebhookId,
    #[error("a webhook with this webhook-id was already accepted")]
    WebhookReplayed,
    #[error("this origin, method or header is not allowed to call from a browser (CORS_ALLOWED_ORIGINS)")]
    CorsRefused,
    #[error("not found")]
    NotFound,
    #[error("too many requests, retry in {0} s")]
    RateLimited(u64),
    #[error("service temporarily unavailable, retry later")]
    Unavailable,
    #[error("internal error")]
    Internal,
    #[error(transparent)]
    Chat(#[from] ChatError),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::TooManyRecipients(_) => "too_many_recipients",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::InvalidId => "invalid_id",
            ApiError::InvalidTopic => "invalid_topic",
            ApiError::PresenceDisabled => "presence_disabled",
            ApiError::InvalidIdempotencyKey => "invalid_idempotency_key",
            ApiError::IdempotencyInProgress => "idempotency_key_in_progress",
            ApiError::IdempotencyMismatch => "idempotency_key_reused",
            ApiError::IdempotencyExpired => "idempotency_key_expired",
            ApiError::MissingCredentials(_) => "missing_credentials",
            ApiError::InvalidApiKey => "invalid_api_key",
            ApiError::InvalidToken => "invalid_token",
            ApiError::TokenExpired => "token_expired",
            ApiError::TokenRevoked => "token_revoked",
            ApiError::InvalidSignature(_) => "invalid_signature",
            ApiError::InvalidWebhookTimestamp => "invalid_webhook_timestamp",
            ApiError::InvalidWebhookId => "invalid_webhook_id",
            ApiError::WebhookReplayed => "webhook_replayed",
            ApiError::CorsRefused => "cors_refused",
            ApiError::NotFound => "not_found",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Unavailable => "service_unavailable",
            ApiError::Internal => "internal_error",
            // The api's own codes for these, as for every other route.
            ApiError::Chat(ChatError::Unavailable) => "service_unavailable",
            ApiError::Chat(error) => error.code(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_)
            | ApiError::InvalidBody(_)
            | ApiError::InvalidField(_)
            | ApiError::TooManyRecipients(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidId
            | ApiError::InvalidTopic
            | ApiError::InvalidWebhookId
            | ApiError::InvalidIdempotencyKey => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::IdempotencyInProgress | ApiError::WebhookReplayed => StatusCode::CONFLICT,
            ApiError::IdempotencyMismatch | ApiError::IdempotencyExpired => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::MissingCredentials(_)
            | ApiError::InvalidApiKey
            | ApiError::InvalidToken
            | ApiError::TokenExpired
            | ApiError::TokenRevoked
            | ApiError::InvalidSignature(_)
            | ApiError::InvalidWebhookTimestamp => StatusCode::UNAUTHORIZED,
            ApiError::CorsRefused => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::PresenceDisabled => StatusCode::NOT_FOUND,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Chat(error) => match error {
                ChatError::Message(_)
                | ChatError::InvalidMembers(_)
                | ChatError::InvalidTitle
                | ChatError::InvalidCursor
                | ChatError::TooManyMembers => StatusCode::BAD_REQUEST,
                ChatError::NotFound | ChatError::NotAMember | ChatError::MessageNotFound => {
                    StatusCode::NOT_FOUND
                }
                ChatError::NotAGroup => StatusCode::CONFLICT,
                ChatError::NotCreator => StatusCode::FORBIDDEN,
                ChatError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
                ChatError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                ChatError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unavailable | ApiError::Chat(ChatError::Unavailable) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
            }
            ApiError::RateLimited(secs) | ApiError::Chat(ChatError::RateLimited(secs)) => {
                response.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            ApiError::MissingCredentials(_)
            | ApiError::InvalidApiKey
            | ApiError::InvalidToken
            | ApiError::TokenExpired
            | ApiError::TokenRevoked => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        notify_service::http::refusal(response, self.code(), &self.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "MySQL unavailable");
            ApiError::Unavailable
        } else {
            tracing::error!(error = %e, "database error");
            ApiError::Internal
        }
    }
}

impl From<TokenRefusal> for ApiError {
    fn from(refusal: TokenRefusal) -> Self {
        match refusal {
            TokenRefusal::Expired => ApiError::TokenExpired,
            TokenRefusal::Invalid => ApiError::InvalidToken,
            TokenRefusal::Revoked => ApiError::TokenRevoked,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Expired => ApiError::TokenExpired,
            AuthError::Invalid => ApiError::InvalidToken,
        }
    }
}
