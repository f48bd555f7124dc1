//! netterms: B2B buy now, pay later for payment service providers.
//!
//! `domain` is pure (money, ids, rules); `store` talks to the database; `service` holds the use
//! cases; `web` is the HTTP edge; `app` runs it all.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod documents;
pub mod domain;
pub mod secrets;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod web;
pub mod workers;
