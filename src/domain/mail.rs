//! An e-mail's body as its parts — greeting, paragraphs, a table of facts, closing — from which
//! its text and HTML alternatives are made whenever they are needed. A message stores the parts
//! once (compact JSON), not both renderings: the money transaction that queues the message
//! writes a third of the bytes (issue 20), and the text and HTML cannot drift apart.

use maud::{Markup, html};
use serde::{Deserialize, Serialize};

/// The parts of an e-mail body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    #[serde(rename = "g")]
    pub greeting: String,
    #[serde(rename = "p")]
    pub paragraphs: Vec<String>,
    #[serde(rename = "r", default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<(String, String)>,
    #[serde(rename = "c")]
    pub closing: String,
}

impl Body {
    /// The plain-text alternative: paragraphs, then the facts as aligned rows, then the closing.
    pub fn text(&self) -> String {
        let mut text = format!("{}\n\n", self.greeting);
        for p in &self.paragraphs {
            text.push_str(p);
            text.push_str("\n\n");
        }
        let width = self.rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        for (k, v) in &self.rows {
            text.push_str(&format!("{k:<width$}  {v}\n"));
        }
        if !self.rows.is_empty() {
            text.push('\n');
        }
        text.push_str(&self.closing);
        text.push('\n');
        text
    }

    /// The HTML alternative, a whole document in `lang` titled `subject`.
    pub fn html(&self, lang: &str, subject: &str) -> String {
        let body: Markup = html! {
            (maud::DOCTYPE)
            html lang=(lang) {
                head { meta charset="utf-8"; title { (subject) } }
                body style="font-family: Arial, Helvetica, sans-serif; color: #1a1a1a; max-width: 600px" {
                    p { (self.greeting) }
                    @for p in &self.paragraphs { p { (p) } }
                    @if !self.rows.is_empty() {
                        table style="border-collapse: collapse" {
                            @for (k, v) in &self.rows {
                                tr {
                                    td style="padding: 4px 16px 4px 0; color: #555" { (k) }
                                    td style="padding: 4px 0; font-weight: bold" { (v) }
                                }
                            }
                        }
                    }
                    p style="white-space: pre-line" { (self.closing) }
                }
            }
        };
        body.into_string()
    }

    /// As stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_html_come_from_the_same_parts_and_survive_storage() {
        let b = Body {
            greeting: "Guten Tag Frau <Muster>,".into(),
            paragraphs: vec!["Erster & zweiter Absatz.".into(), "Noch einer.".into()],
            rows: vec![("Betrag".into(), "1.234,56 €".into()), ("Fällig am".into(), "27.12.2026".into())],
            closing: "Mit freundlichen Grüßen\nnetterms".into(),
        };
        let text = b.text();
        assert!(text.starts_with("Guten Tag Frau <Muster>,\n\nErster & zweiter Absatz.\n\nNoch einer.\n\n"), "{text}");
        assert!(
            text.contains("Betrag     1.234,56 €\nFällig am  27.12.2026\n\nMit freundlichen Grüßen\nnetterms\n"),
            "{text}"
        );
        let html = b.html("de", "Rechnung <1>");
        assert!(html.starts_with("<!DOCTYPE html><html lang=\"de\">"), "{html}");
        assert!(html.contains("<title>Rechnung &lt;1&gt;</title>") && html.contains("Frau &lt;Muster&gt;"), "{html}");
        assert!(html.contains("Erster &amp; zweiter") && html.contains("1.234,56 €</td>"), "{html}");
        let stored = b.to_json();
        assert!(stored.len() < text.len() + 40, "{stored}");
        assert_eq!(serde_json::from_str::<Body>(&stored).unwrap(), b);
        let no_rows = Body { rows: vec![], ..b };
        assert!(!no_rows.to_json().contains("\"r\""));
        assert!(!no_rows.html("de", "x").contains("<table"));
    }
}
