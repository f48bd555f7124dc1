#![allow(clippy::unwrap_used, clippy::expect_used)]
//! HTTP-level integration tests. They run on SQLite, or on PostgreSQL when
//! `NETTERMS_TEST_DATABASE_URL` is set (`.ci/run` runs the suite both ways).

mod helpers;

mod auth;
mod bad_input;
mod bank_files;
mod browser;
mod camt;
pub mod checkout;
mod clock;
mod console_browser;
mod disputes;
pub mod dunning;
mod einvoice;
mod four_eyes;
mod idempotency;
mod jobs;
mod merchants;
mod messages;
pub mod operators;
mod ops;
pub mod orders;
pub mod payments;
mod payouts;
mod portal;
mod psps;
mod retry_safety;
mod security;
mod sepa_xsd;
mod slow_clients;
mod smtp;
mod webhooks;
