//! Small rules of the texts people read: a count with its noun in the right number, references
//! in groups.

/// `n` with the singular or the plural noun: `1 Rechnung`, `2 Rechnungen`, `1 invoice`.
pub fn counted(n: impl Into<i128>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `s` in groups of `n` characters, as people read references (`RF18 5390 0754 7034`); what
/// banks and QR codes carry keeps the reference without spaces.
pub fn grouped(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
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

    #[test]
    fn references_read_in_fours() {
        assert_eq!(grouped("RF18539007547034", 4), "RF18 5390 0754 7034");
        assert_eq!(grouped("RF62 0740896F2555B2FC51926", 4), "RF62 0740 896F 2555 B2FC 5192 6");
        assert_eq!(grouped("", 4), "");
    }
}
