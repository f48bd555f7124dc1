//! Money: integer minor units with an ISO 4217 currency. No floats, checked arithmetic only.

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency code (three upper-case ASCII letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency must be three upper-case letters (ISO 4217)")]
    BadCurrency,
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount out of range")]
    Overflow,
}

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");

    pub fn parse(s: &str) -> Result<Currency, MoneyError> {
        let b = s.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency([b[0], b[1], b[2]]))
        } else {
            Err(MoneyError::BadCurrency)
        }
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from three ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount of money in minor units (cents for EUR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    pub fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        let minor = self.minor.checked_sub(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }

    /// `rate_bps` basis points of this amount, rounded half away from zero, in integer arithmetic.
    pub fn basis_points(self, rate_bps: i64) -> Result<Money, MoneyError> {
        let product = i128::from(self.minor) * i128::from(rate_bps);
        let half = if product >= 0 { 5_000 } else { -5_000 };
        let minor = i64::try_from((product + half) / 10_000).map_err(|_| MoneyError::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn currency_parsing() {
        assert_eq!(Currency::parse("EUR"), Ok(Currency::EUR));
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn mismatched_currencies_do_not_add() {
        let usd = Currency::parse("USD").unwrap();
        assert!(Money::new(1, Currency::EUR).checked_add(Money::new(1, usd)).is_err());
    }

    #[test]
    fn basis_points_round_half_away_from_zero() {
        let eur = Currency::EUR;
        assert_eq!(Money::new(10_000, eur).basis_points(150).unwrap().minor, 150);
        assert_eq!(Money::new(1, eur).basis_points(5_000).unwrap().minor, 1); // 0.5 -> 1
        assert_eq!(Money::new(1, eur).basis_points(4_999).unwrap().minor, 0);
        assert_eq!(Money::new(-1, eur).basis_points(5_000).unwrap().minor, -1);
    }

    proptest! {
        #[test]
        fn add_then_sub_is_identity(a in -1_000_000_000_000i64..1_000_000_000_000, b in -1_000_000_000_000i64..1_000_000_000_000) {
            let x = Money::new(a, Currency::EUR);
            let y = Money::new(b, Currency::EUR);
            prop_assert_eq!(x.checked_add(y).unwrap().checked_sub(y).unwrap(), x);
        }

        #[test]
        fn overflow_is_an_error_not_a_wrap(a in any::<i64>(), b in any::<i64>()) {
            let r = Money::new(a, Currency::EUR).checked_add(Money::new(b, Currency::EUR));
            match a.checked_add(b) {
                Some(s) => prop_assert_eq!(r.unwrap().minor, s),
                None => prop_assert!(r.is_err()),
            }
        }

        #[test]
        fn fee_never_exceeds_amount(amount in 0i64..10_000_000_000, bps in 0i64..=10_000) {
            let fee = Money::new(amount, Currency::EUR).basis_points(bps).unwrap();
            prop_assert!(fee.minor >= 0 && fee.minor <= amount);
        }
    }
}
