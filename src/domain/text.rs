//! Small rules of the texts people read: a count with its noun in the right number.

/// `n` with the singular or the plural noun: `1 Rechnung`, `2 Rechnungen`, `1 invoice`.
pub fn counted(n: impl Into<i128>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_everything_else_plural() {
        assert_eq!(counted(1, "Rechnung", "Rechnungen"), "1 Rechnung");
        assert_eq!(counted(0, "invoice", "invoices"), "0 invoices");
        assert_eq!(counted(2u32, "entry", "entries"), "2 entries");
    }
}
