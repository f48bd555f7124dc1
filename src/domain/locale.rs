//! The language of what people read — e-mails, PDFs, pages — and how amounts and dates are
//! written in it. Vocabulary shared by the documents and the use cases, so it sits below both.

use chrono::NaiveDate;

/// `de` or `en`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    De,
    En,
}

impl Locale {
    pub fn parse(s: &str) -> Locale {
        if s == "en" { Locale::En } else { Locale::De }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Locale::De => "de",
            Locale::En => "en",
        }
    }

    /// `de`: "1.234,56 €"; `en`: "€1,234.56" (other currencies by their code).
    pub fn money(self, minor: i64, currency: &str) -> String {
        let sign = if minor < 0 { "-" } else { "" };
        let (units, cents) = (minor.unsigned_abs() / 100, minor.unsigned_abs() % 100);
        let digits = units.to_string();
        let sep = if self == Locale::De { '.' } else { ',' };
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(sep);
            }
            grouped.push(ch);
        }
        match (self, currency) {
            (Locale::De, "EUR") => format!("{sign}{grouped},{cents:02} €"),
            (Locale::De, c) => format!("{sign}{grouped},{cents:02} {c}"),
            (Locale::En, "EUR") => format!("{sign}€{grouped}.{cents:02}"),
            (Locale::En, c) => format!("{sign}{c} {grouped}.{cents:02}"),
        }
    }

    /// `de`: "27.12.2026"; `en`: "27 December 2026".
    pub fn date(self, d: NaiveDate) -> String {
        match self {
            Locale::De => d.format("%d.%m.%Y").to_string(),
            Locale::En => d.format("%-d %B %Y").to_string(),
        }
    }

    pub fn pick(self, de: &'static str, en: &'static str) -> &'static str {
        if self == Locale::De { de } else { en }
    }
}
