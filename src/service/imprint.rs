//! The operator's legal identity (§ 5 DDG, § 35a GmbHG): who netterms is, from the `issuer_*`
//! configuration — the same details its fee invoices carry. Shown on the portal's imprint page and
//! at the foot of every e-mail and PDF a buyer or PSP receives.

use crate::config::Config;
use crate::domain::locale::Locale;

/// The imprint in three lines: name and address; register and managing directors; VAT id and
/// contact.
pub fn lines(c: &Config, l: Locale) -> Vec<String> {
    vec![
        format!(
            "{} · {} · {} {} · {}",
            c.issuer_name, c.issuer_street, c.issuer_postal_code, c.issuer_city, c.issuer_country
        ),
        format!(
            "{} {} · {}: {}",
            c.issuer_register_court,
            c.issuer_register_number,
            l.pick("Geschäftsführung", "Managing directors"),
            c.issuer_managing_directors
        ),
        format!("{}: {} · {} · {}", l.pick("USt-IdNr.", "VAT ID"), c.issuer_vat_id, c.issuer_email, c.issuer_phone),
    ]
}

/// An e-mail's text with the imprint at its foot (after the signature separator).
pub fn text_with(text: &str, imprint: &[String]) -> String {
    format!("{}\n-- \n{}\n", text.trim_end(), imprint.join("\n"))
}

/// An e-mail's HTML with the imprint at the foot of its body.
pub fn html_with(html: &str, imprint: &[String]) -> String {
    let foot = maud::html! {
        p style="margin-top: 32px; font-size: 12px; color: #666" {
            @for (i, line) in imprint.iter().enumerate() {
                @if i > 0 { br; }
                (line)
            }
        }
    }
    .into_string();
    match html.rfind("</body>") {
        Some(at) => format!("{}{foot}{}", &html[..at], &html[at..]),
        None => format!("{html}{foot}"),
    }
}
