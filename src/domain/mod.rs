//! The pure domain: identifiers, money, validation rules and reference data. No I/O here.

pub mod camt;
pub mod decision;
pub mod dunning;
pub mod einvoice;
pub mod events;
pub mod files;
pub mod iban;
pub mod ids;
pub mod ledger;
pub mod legal_forms;
pub mod locale;
pub mod mail;
pub mod matching;
pub mod merchant;
pub mod money;
pub mod operators;
pub mod order;
pub mod pain002;
pub mod psp;
pub mod sepa;
pub mod text;
pub mod totp;
pub mod validate;
pub mod webhook;
