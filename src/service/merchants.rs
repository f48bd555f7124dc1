//! PSP use cases for merchants: activate, read, deactivate, reactivate.

use super::Services;
use crate::domain::events::{Event, MerchantEventData};
use crate::domain::ids::{MerchantId, PspId};
use crate::domain::merchant::{Merchant, MerchantStatus, NewMerchant};
use crate::store::{StoreError, Tx, events, merchants};

#[derive(Debug, thiserror::Error)]
pub enum MerchantError {
    #[error("merchant not found")]
    NotFound,
    #[error("a merchant with external_id {0:?} already exists")]
    DuplicateExternalId(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Activates a merchant for `psp_id` in `tx` and writes `merchant.activated`.
pub async fn activate(s: &Services, tx: &mut Tx, psp_id: PspId, m: &NewMerchant) -> Result<Merchant, MerchantError> {
    let at = s.now_for(tx, psp_id).await?;
    let now = at.now;
    let merchant = merchants::insert(tx, psp_id, m, now)
        .await?
        .ok_or_else(|| MerchantError::DuplicateExternalId(m.external_id.clone()))?;
    let event = Event::MerchantActivated(MerchantEventData { merchant_id: merchant.merchant_id });
    events::append(tx, psp_id, &event, at).await?;
    Ok(merchant)
}

pub async fn get(s: &Services, psp_id: PspId, id: MerchantId) -> Result<Merchant, MerchantError> {
    let mut conn = s.db.conn().await?;
    merchants::get(&mut conn, psp_id, id).await?.ok_or(MerchantError::NotFound)
}

pub async fn list(
    s: &Services,
    psp_id: PspId,
    limit: i64,
    starting_after: Option<MerchantId>,
) -> Result<Vec<Merchant>, MerchantError> {
    let mut conn = s.db.conn().await?;
    Ok(merchants::list(&mut conn, psp_id, limit, starting_after).await?)
}

/// Sets the merchant's status. Asking for the status it already has changes nothing and
/// writes no event, so a retried call is harmless.
pub async fn set_status(
    s: &Services,
    tx: &mut Tx,
    psp_id: PspId,
    id: MerchantId,
    to: MerchantStatus,
) -> Result<Merchant, MerchantError> {
    let at = s.now_for(tx, psp_id).await?;
    let now = at.now;
    let from = match to {
        MerchantStatus::Active => MerchantStatus::Inactive,
        MerchantStatus::Inactive => MerchantStatus::Active,
    };
    let (merchant, changed) =
        merchants::transition(tx, psp_id, id, from, to, now).await?.ok_or(MerchantError::NotFound)?;
    if changed {
        let data = MerchantEventData { merchant_id: id };
        let event = match to {
            MerchantStatus::Active => Event::MerchantActivated(data),
            MerchantStatus::Inactive => Event::MerchantDeactivated(data),
        };
        events::append(tx, psp_id, &event, at).await?;
    }
    Ok(merchant)
}
