//! Errors of the storage layer, split by what a caller can do about them.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// MySQL cannot be reached right now; the request may be retried later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Query(DieselError),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl StoreError {
    /// Whether InnoDB chose this transaction as a deadlock's victim (1213):
    /// it was rolled back at once, and running it again is what the server
    /// asks for.
    pub fn is_deadlock(&self) -> bool {
        match self {
            StoreError::Query(DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)) => {
                info.message().starts_with("Deadlock found")
            }
            _ => false,
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// Whether InnoDB rolled the transaction back for a lock conflict with
    /// another one (a deadlock, or a lock wait that timed out): running it
    /// again is what the server asks for. The driver keeps only the
    /// message of such errors (codes 1213 and 1205), which MySQL and
    /// MariaDB word the same.
    pub fn is_lock_conflict(&self) -> bool {
        match self {
            StoreError::Query(DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)) => {
                let message = info.message();
                message.starts_with("Deadlock found") || message.starts_with("Lock wait timeout")
            }
            _ => false,
        }
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match &e {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )
            | DieselError::BrokenTransactionManager => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Query(e),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for StoreError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(message: &str) -> StoreError {
        StoreError::Query(DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(message.to_owned()),
        ))
    }

    #[test]
    fn lock_conflicts_are_told_apart() {
        assert!(
            server_error("Deadlock found when trying to get lock; try restarting transaction")
                .is_lock_conflict()
        );
        assert!(
            server_error("Lock wait timeout exceeded; try restarting transaction")
                .is_lock_conflict()
        );
        assert!(!server_error("Table 'x' doesn't exist").is_lock_conflict());
        assert!(!StoreError::Unavailable("gone".into()).is_lock_conflict());
    }
}
