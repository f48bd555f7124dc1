//! Operator use cases: activate PSPs, change their settings, issue and revoke credentials,
//! reveal a password once through its link.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::Services;
use crate::domain::ids::{CredentialId, PspId};
use crate::domain::psp::{Psp, PspPatch, PspSettings};
use crate::domain::validate::FieldError;
use crate::secrets::{Purpose, Secret, random_alphanumeric};
use crate::store::psps::{self, CredentialInfo, LinkState};
use crate::store::{AsExec, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PspError {
    #[error("psp not found")]
    NotFound,
    #[error("credential not found")]
    CredentialNotFound,
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new API credential: the username, and the one-time link that reveals its password.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedCredential {
    pub credential_id: CredentialId,
    /// `<psp_id>_<16 random characters>`.
    pub username: String,
    /// Opens once and reveals the password; expires.
    pub password_url: String,
    pub password_url_expires_at: DateTime<Utc>,
}

/// The answer to a PSP activation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedPsp {
    pub psp_id: PspId,
    pub username: String,
    pub password_url: String,
    pub password_url_expires_at: DateTime<Utc>,
    pub credential_id: CredentialId,
    pub psp: Psp,
}

async fn issue(
    s: &Services,
    tx: &mut impl AsExec,
    psp_id: PspId,
    now: DateTime<Utc>,
) -> Result<IssuedCredential, StoreError> {
    let credential_id = CredentialId::new();
    let username = format!("{psp_id}_{}", random_alphanumeric(16));
    let token = random_alphanumeric(43);
    let password = s.keyring.password_for_token(&token);
    let digest = s.keyring.digest(Purpose::CredentialSecret, password.expose().as_bytes());
    psps::insert_credential(tx, credential_id, psp_id, &username, &digest, now).await?;
    let expires = now + Duration::hours(s.config.password_link_ttl_hours);
    let token_digest = s.keyring.digest(Purpose::PasswordLinkToken, token.as_bytes());
    psps::insert_password_link(tx, &token_digest, credential_id, expires).await?;
    Ok(IssuedCredential {
        credential_id,
        username,
        password_url: format!("{}/credentials/{token}", s.config.public_url()),
        password_url_expires_at: expires,
    })
}

/// Activates a PSP with its first credential.
pub async fn create(s: &Services, settings: &PspSettings) -> Result<CreatedPsp, PspError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let psp = psps::insert(&mut tx, PspId::new(), settings, now).await?;
    let cred = issue(s, &mut tx, psp.psp_id, now).await?;
    tx.commit().await?;
    tracing::info!(psp_id = %psp.psp_id, credential_id = %cred.credential_id, "psp created");
    Ok(CreatedPsp {
        psp_id: psp.psp_id,
        username: cred.username,
        password_url: cred.password_url,
        password_url_expires_at: cred.password_url_expires_at,
        credential_id: cred.credential_id,
        psp,
    })
}

pub async fn get(s: &Services, id: PspId) -> Result<Psp, PspError> {
    let mut conn = s.db.conn().await?;
    psps::get(&mut conn, id).await?.ok_or(PspError::NotFound)
}

pub async fn list(s: &Services, limit: i64, starting_after: Option<PspId>) -> Result<Vec<Psp>, PspError> {
    let mut conn = s.db.conn().await?;
    Ok(psps::list(&mut conn, limit, starting_after).await?)
}

/// Changes a PSP's fees, payout account or frequency.
pub async fn update(s: &Services, id: PspId, patch: PspPatch) -> Result<Psp, PspError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let current = psps::get_for_update(&mut tx, id).await?.ok_or(PspError::NotFound)?;
    let next = patch.apply(&current.settings()).map_err(PspError::Invalid)?;
    let psp = psps::update(&mut tx, id, &next, now).await?.ok_or(PspError::NotFound)?;
    // Fee invoices held for want of a billing address are issued once it is there.
    let issued = super::fee_invoices::issue_held(s, &mut tx, &psp).await.map_err(|e| match e {
        super::orders::OrderError::Store(e) => PspError::Store(e),
        other => PspError::Store(StoreError::Corrupt(other.to_string())),
    })?;
    tx.commit().await?;
    tracing::info!(psp_id = %id, fee_invoices_issued = issued, "psp updated");
    Ok(psp)
}

/// Issues an additional credential (rotation: old and new both work until the old is revoked).
pub async fn issue_credential(s: &Services, psp_id: PspId) -> Result<IssuedCredential, PspError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    psps::get_for_update(&mut tx, psp_id).await?.ok_or(PspError::NotFound)?;
    let cred = issue(s, &mut tx, psp_id, now).await?;
    tx.commit().await?;
    tracing::info!(%psp_id, credential_id = %cred.credential_id, "credential issued");
    Ok(cred)
}

pub async fn list_credentials(s: &Services, psp_id: PspId) -> Result<Vec<CredentialInfo>, PspError> {
    let mut conn = s.db.conn().await?;
    psps::get(&mut conn, psp_id).await?.ok_or(PspError::NotFound)?;
    Ok(psps::list_credentials(&mut conn, psp_id).await?)
}

/// Revokes a credential; it stops working at once. Revoking again changes nothing.
pub async fn revoke_credential(s: &Services, psp_id: PspId, id: CredentialId) -> Result<CredentialInfo, PspError> {
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    let info = psps::revoke_credential(&mut tx, psp_id, id, now).await?.ok_or(PspError::CredentialNotFound)?;
    tx.commit().await?;
    tracing::info!(%psp_id, credential_id = %id, "credential revoked");
    Ok(info)
}

/// Finds the credential with `username` (for the CLI, which names credentials by username).
pub async fn credential_by_username(s: &Services, username: &str) -> Result<(PspId, CredentialId), PspError> {
    let mut conn = s.db.conn().await?;
    let r = psps::auth_record(&mut conn, username).await?.ok_or(PspError::CredentialNotFound)?;
    Ok((r.psp_id, r.credential_id))
}

#[derive(Debug, thiserror::Error)]
pub enum RevealError {
    #[error("unknown link")]
    Unknown,
    #[error("link already used or expired")]
    Gone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a password link can still be opened (without using it up).
pub async fn link_state(s: &Services, token: &str) -> Result<(), RevealError> {
    let digest = s.keyring.digest(Purpose::PasswordLinkToken, token.as_bytes());
    let mut conn = s.db.conn().await?;
    match psps::password_link_state(&mut conn, &digest, s.clock.now()).await? {
        LinkState::Usable => Ok(()),
        LinkState::Gone => Err(RevealError::Gone),
        LinkState::Unknown => Err(RevealError::Unknown),
    }
}

/// Uses up a password link and returns the password; only the first caller ever gets it.
pub async fn reveal_password(s: &Services, token: &str) -> Result<Secret, RevealError> {
    let digest = s.keyring.digest(Purpose::PasswordLinkToken, token.as_bytes());
    let now = s.clock.now();
    let mut tx = s.db.begin().await?;
    if psps::consume_password_link(&mut tx, &digest, now).await? {
        tx.commit().await?;
        return Ok(s.keyring.password_for_token(token));
    }
    drop(tx);
    match link_state(s, token).await {
        Err(RevealError::Unknown) => Err(RevealError::Unknown),
        Err(RevealError::Store(e)) => Err(RevealError::Store(e)),
        _ => Err(RevealError::Gone),
    }
}
