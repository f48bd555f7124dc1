//! Typed identifiers. Every object id is a UUIDv7, so ids sort by creation time.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id.
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// A payment service provider.
    PspId
);
id_type!(
    /// One API credential of a PSP.
    CredentialId
);
id_type!(
    /// A merchant activated by a PSP.
    MerchantId
);
id_type!(
    /// An event in the outbox.
    EventId
);
id_type!(
    /// A webhook endpoint of a PSP.
    EndpointId
);
id_type!(
    /// A webhook signing secret (its seed row).
    WebhookSecretId
);
id_type!(
    /// One stored delivery attempt.
    AttemptId
);
id_type!(
    /// A buyer (a company, de-duplicated across merchants).
    BuyerId
);
id_type!(
    /// A checkout session of either flow.
    SessionId
);
id_type!(
    /// An order.
    OrderId
);
id_type!(
    /// A stored credit decision.
    DecisionId
);
id_type!(
    /// A capture: an invoice to the buyer.
    CaptureId
);
id_type!(
    /// A refund: a credit note.
    RefundId
);
id_type!(
    /// A ledger entry.
    EntryId
);
id_type!(
    /// A background job.
    JobId
);
