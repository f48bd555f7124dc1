//! Instance secrets kept in the database (the sandbox's generated server key).

use chrono::{DateTime, Utc};

use super::{Db, StoreResult};
use crate::with_conn;

/// The value stored under `name`, or `fresh` stored now if there was none (first writer wins).
pub async fn get_or_insert(db: &Db, name: &str, fresh: &str, now: DateTime<Utc>) -> StoreResult<String> {
    let mut tx = db.begin().await?;
    let value: String = with_conn!(&mut tx, c => {
        sqlx::query("INSERT INTO instance_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
            .bind(name).bind(fresh).bind(now).execute(&mut *c).await?;
        sqlx::query_scalar("SELECT value FROM instance_secrets WHERE name = $1").bind(name).fetch_one(&mut *c).await?
    });
    tx.commit().await?;
    Ok(value)
}
